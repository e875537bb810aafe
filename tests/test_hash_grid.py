"""Tests of the hash-grid encoding against tiny-cuda-nn's formulas, re-derived here independently.

tiny-cuda-nn (encodings/grid.h, common_device.h), per level l of a config (L, F, T, N0, b):
    scale_l = 2 ** (l * log2(b)) * N0 - 1,  resolution_l = ceil(scale_l) + 1
    table_size_l = min(next_multiple(resolution_l ** 3, 8), 2 ** T),  offset_l = sum of earlier table sizes
    grid coordinate p = x * scale_l + 0.5, cell = floor(p), corners cell + (c & 1, c >> 1 & 1, c >> 2 & 1)
    row = (x + y * res + z * res ** 2) mod size when res ** 3 <= size,
          else (x ^ y * 2654435761 ^ z * 805459861 mod 2 ** 32) mod size
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.nn.functional as F

from avatar.core.backends import tcnn_unavailable_reason
from avatar.core.errors import AvatarError
from avatar.model.encoding import (
    HashGridConfig,
    HashGridEncoding,
    flatten_level_tables,
    grid_indices,
    hash_grid_encode,
    level_tables,
    make_hash_grid,
)

# Scales chosen away from integers so float32 and exact arithmetic agree on every ceil (b = 2 is exact in both).
CONFIGS = {
    "dense_only": HashGridConfig(
        n_levels=3, n_features_per_level=2, log2_hashmap_size=14, base_resolution=4, per_level_scale=1.37
    ),
    "mixed_f4": HashGridConfig(
        n_levels=4, n_features_per_level=4, log2_hashmap_size=10, base_resolution=6, per_level_scale=1.73
    ),
    "f1_scale2": HashGridConfig(
        n_levels=5, n_features_per_level=1, log2_hashmap_size=8, base_resolution=3, per_level_scale=2.0
    ),
    "f8_tiny_table": HashGridConfig(
        n_levels=3, n_features_per_level=8, log2_hashmap_size=5, base_resolution=2, per_level_scale=2.9
    ),
    "smoothstep": HashGridConfig(
        n_levels=4,
        n_features_per_level=2,
        log2_hashmap_size=9,
        base_resolution=5,
        per_level_scale=1.61,
        interpolation="Smoothstep",
    ),
    "nearest": HashGridConfig(
        n_levels=3,
        n_features_per_level=2,
        log2_hashmap_size=7,
        base_resolution=3,
        per_level_scale=2.3,
        interpolation="Nearest",
    ),
}
LINEAR_CONFIGS = [name for name, config in CONFIGS.items() if config.interpolation == "Linear"]
PRIMES = (1, 2654435761, 805459861)


def _random_params(config: HashGridConfig, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(config.n_params, generator=generator, dtype=dtype) * 2 - 1


def _random_positions(count: int, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    edges = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]], dtype=dtype)
    return torch.cat([edges, torch.rand(count, 3, generator=generator, dtype=dtype)])


def _reference_layout(config: HashGridConfig) -> list[dict]:
    """tiny-cuda-nn's per-level layout in exact (float64) arithmetic."""
    layout, offset = [], 0
    for level in range(config.n_levels):
        scale = 2.0 ** (level * math.log2(config.per_level_scale)) * config.base_resolution - 1.0
        resolution = math.ceil(scale) + 1
        size = min(-(-(resolution**3) // 8) * 8, 2**config.log2_hashmap_size)
        layout.append(
            dict(scale=scale, resolution=resolution, size=size, offset=offset, hashed=resolution**3 > size)
        )
        offset += size
    return layout


def _python_row(corner: tuple[int, int, int], resolution: int, size: int, hashed: bool) -> int:
    x, y, z = corner
    if hashed:
        return ((x * PRIMES[0]) ^ (y * PRIMES[1]) ^ (z * PRIMES[2])) % 2**32 % size
    return (x + y * resolution + z * resolution * resolution) % 2**32 % size


def _python_level(point: list[float], scale: float, layout: dict, interpolation: str):
    """Rows of the 8 corners and their weights for one point, with Python floats and ints."""
    grid = [coordinate * scale + 0.5 for coordinate in point]
    cell = [math.floor(g) for g in grid]
    fraction = [g - c for g, c in zip(grid, cell)]
    if interpolation == "Smoothstep":
        fraction = [t * t * (3 - 2 * t) for t in fraction]
    rows, weights = [], []
    for corner_number in range(8):
        high = [(corner_number >> dim) & 1 for dim in range(3)]
        corner = tuple(c + h for c, h in zip(cell, high))
        rows.append(_python_row(corner, layout["resolution"], layout["size"], layout["hashed"]))
        if interpolation == "Nearest":
            weights.append(1.0 if corner_number == 0 else 0.0)
        else:
            weights.append(math.prod(t if h else 1 - t for t, h in zip(fraction, high)))
    return rows, weights


def test_default_config_layout_matches_tcnn_formulas_by_hand():
    # Default: L=16, F=2, T=19, N0=16, b=2^(8/15); scale_l = 16 * 2^(8l/15) - 1.
    #   l=0: 15 -> res 16, 16^3 = 4096 rows (dense)      l=1: 22.16 -> 24, 13824 (dense)
    #   l=2: 32.51 -> 34, 39304 (dense)                   l=3: 47.50 -> 49, 117649 -> 117656 (dense)
    #   l=4: 69.20 -> 71, 357911 -> 357912 <= 2^19 (dense)
    #   l=5: 100.59 -> 102, 102^3 = 1061208 > 2^19 = 524288: hashed, 524288 rows, as every finer level
    #   l=6..15: 146.03, 211.80, 306.97, 444.72, 644.08, 932.60, 1350.18, 1954.52, 2829.16, 4095 (float32:
    #   4094.9985) -> 148, 213, 308, 446, 646, 934, 1352, 1956, 2831, 4096
    config = HashGridConfig()
    resolutions = [16, 24, 34, 49, 71, 102, 148, 213, 308, 446, 646, 934, 1352, 1956, 2831, 4096]
    sizes = [4096, 13824, 39304, 117656, 357912] + [524288] * 11
    offsets = [0, 4096, 17920, 57224, 174880, 532792] + [532792 + 524288 * k for k in range(1, 12)]
    assert [level.resolution for level in config.levels()] == resolutions
    assert [level.table_size for level in config.levels()] == sizes
    assert [level.hashed for level in config.levels()] == [False] * 5 + [True] * 11
    assert list(config.level_offsets()) == offsets
    assert offsets[-1] == 6299960 and config.n_params == 2 * 6299960
    assert config.level(0).scale == 15.0
    assert config.level(15).scale == pytest.approx(4095.0, abs=2e-3)
    assert config.n_output_dims == 32
    assert config.to_tcnn() == {
        "otype": "HashGrid",
        "n_levels": 16,
        "n_features_per_level": 2,
        "log2_hashmap_size": 19,
        "base_resolution": 16,
        "per_level_scale": pytest.approx(2 ** (8 / 15)),
        "interpolation": "Linear",
    }


@pytest.mark.parametrize("name", CONFIGS)
def test_level_layout_matches_exact_formulas(name):
    config = CONFIGS[name]
    for level, expected in zip(config.levels(), _reference_layout(config)):
        assert level.scale == pytest.approx(expected["scale"], rel=1e-6)
        assert (level.resolution, level.table_size, level.offset) == (
            expected["resolution"],
            expected["size"],
            expected["offset"],
        )
        assert level.hashed == expected["hashed"] and level.dense != level.hashed
    assert config.n_params == sum(e["size"] for e in _reference_layout(config)) * config.n_features_per_level


def test_configs_cover_dense_and_hashed_levels():
    kinds = {level.hashed for config in CONFIGS.values() for level in config.levels()}
    assert kinds == {True, False}
    assert all(
        any(level.hashed for level in config.levels())
        for name, config in CONFIGS.items()
        if name != "dense_only"
    )


@pytest.mark.parametrize("name", LINEAR_CONFIGS)
def test_dense_levels_match_grid_sample_of_the_table_as_a_volume(name):
    config = CONFIGS[name]
    params = _random_params(config)
    positions = _random_positions(300)
    features = hash_grid_encode(positions, params, config)
    dense_levels = [level for level in config.levels() if level.dense]
    assert dense_levels
    for level, table in zip(config.levels(), level_tables(params, config)):
        if level.hashed:
            continue
        res = level.resolution
        # Corner coordinates reach `res` (the +0.5 offset); tcnn's linear index then wraps, so the volume
        # has res + 1 vertices per axis, vertex (x, y, z) holding row (x + y res + z res^2) mod table_size.
        axis = torch.arange(res + 1)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        volume = table[(x + y * res + z * res * res) % level.table_size]  # [z, y, x, F]
        # align_corners=True: normalised -1 and 1 are the centres of vertices 0 and res.
        grid = (positions * level.scale + 0.5) / res * 2 - 1
        sampled = F.grid_sample(
            volume.permute(3, 0, 1, 2)[None],
            grid[None, :, None, None, :],
            mode="bilinear",
            align_corners=True,
        )[0, :, :, 0, 0].T
        columns = features[
            :, level.index * config.n_features_per_level : (level.index + 1) * config.n_features_per_level
        ]
        torch.testing.assert_close(columns, sampled, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_level_matches_a_python_int_reference(name):
    config = CONFIGS[name]
    params = _random_params(config)
    positions = _random_positions(5)
    features = hash_grid_encode(positions, params, config)
    for level, layout in zip(config.levels(), _reference_layout(config)):
        rows = grid_indices(positions, config, level.index)
        table = level_tables(params, config)[level.index].tolist()
        for point_index, point in enumerate(positions.tolist()):
            expected_rows, weights = _python_level(point, level.scale, layout, config.interpolation)
            assert rows[point_index].tolist() == expected_rows
            for feature in range(config.n_features_per_level):
                expected = sum(w * table[row][feature] for w, row in zip(weights, expected_rows))
                column = level.index * config.n_features_per_level + feature
                assert features[point_index, column].item() == pytest.approx(expected, abs=1e-12)


def test_float32_rows_emulate_tcnn_fma_and_features_follow_float64():
    config = CONFIGS["mixed_f4"]
    params = _random_params(config, dtype=torch.float32)
    positions = _random_positions(500, dtype=torch.float32)
    features32 = hash_grid_encode(positions, params, config)
    features64 = hash_grid_encode(positions.double(), params.double(), config)
    assert features32.dtype == torch.float32
    torch.testing.assert_close(features32.double(), features64, atol=1e-4, rtol=0)
    for level in config.levels():
        rows = grid_indices(positions, config, level.index)
        for point_index, point in enumerate(positions[:20].tolist()):
            # fmaf(scale, x, 0.5f): exact product and sum in float64, rounded once to float32.
            grid = [torch.tensor(c * level.scale + 0.5, dtype=torch.float64).float().item() for c in point]
            cell = [math.floor(g) for g in grid]
            corners = [tuple(c + ((n >> d) & 1) for d, c in enumerate(cell)) for n in range(8)]
            expected = [_python_row(c, level.resolution, level.table_size, level.hashed) for c in corners]
            assert rows[point_index].tolist() == expected


@pytest.mark.parametrize("interpolation", ["Linear", "Smoothstep", "Nearest"])
def test_gradcheck_params_and_positions(interpolation):
    config = HashGridConfig(
        n_levels=3,
        n_features_per_level=2,
        log2_hashmap_size=6,
        base_resolution=2,
        per_level_scale=1.9,
        interpolation=interpolation,
    )
    assert {level.hashed for level in config.levels()} == {False, True}
    params = _random_params(config).requires_grad_()
    positions = torch.rand(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.9 + 0.05
    positions.requires_grad_()
    assert torch.autograd.gradcheck(lambda p, x: hash_grid_encode(x, p, config), (params, positions))


def test_gradients_of_params_are_the_interpolation_weights():
    config = CONFIGS["mixed_f4"]
    params = _random_params(config).requires_grad_()
    positions = _random_positions(3)
    hash_grid_encode(positions, params, config)[:, -1].sum().backward()  # last feature of the finest level
    level = config.level(config.n_levels - 1)
    expected = torch.zeros(config.n_params, dtype=torch.float64)
    for point in positions.tolist():
        rows, weights = _python_level(point, level.scale, _reference_layout(config)[-1], config.interpolation)
        for row, weight in zip(rows, weights):
            expected[(level.offset + row) * config.n_features_per_level + 3] += weight
    torch.testing.assert_close(params.grad, expected, atol=1e-12, rtol=0)


def test_positions_outside_the_unit_cube_are_clamped():
    config = CONFIGS["mixed_f4"]
    params = _random_params(config)
    outside = torch.tensor([[-0.5, 0.3, 1.7], [2.0, -3.0, 0.4], [0.2, 0.5, 0.9]], dtype=torch.float64)
    outside.requires_grad_()
    features = hash_grid_encode(outside, params, config)
    torch.testing.assert_close(features, hash_grid_encode(outside.detach().clamp(0, 1), params, config))
    features.sum().backward()
    assert (
        outside.grad[0, 0] == 0
        and outside.grad[0, 2] == 0
        and outside.grad[1, 0] == 0
        and outside.grad[1, 1] == 0
    )
    inside = outside.detach().clamp(0, 1).requires_grad_()
    hash_grid_encode(inside, params, config).sum().backward()
    torch.testing.assert_close(outside.grad[2], inside.grad[2])
    torch.testing.assert_close(outside.grad[0, 1], inside.grad[0, 1])
    rows = grid_indices(outside.detach(), config, config.n_levels - 1)
    torch.testing.assert_close(rows, grid_indices(outside.detach().clamp(0, 1), config, config.n_levels - 1))


def test_level_tables_and_flat_params_are_interchangeable():
    config = CONFIGS["f1_scale2"]
    params = _random_params(config)
    tables = [table.clone().requires_grad_() for table in level_tables(params, config)]
    assert [tuple(t.shape) for t in tables] == [(level.table_size, 1) for level in config.levels()]
    torch.testing.assert_close(flatten_level_tables(tables, config), params)
    positions = _random_positions(50)
    features = hash_grid_encode(positions, tables, config)
    torch.testing.assert_close(features, hash_grid_encode(positions, params, config))
    features.sum().backward()
    assert all(table.grad is not None and table.grad.abs().sum() > 0 for table in tables)
    with pytest.raises(ValueError, match="shape"):
        hash_grid_encode(positions, params[:-1], config)
    with pytest.raises(ValueError, match="level tables"):
        flatten_level_tables(tables[:-1], config)


def test_batch_dimensions_and_empty_input():
    config = CONFIGS["mixed_f4"]
    params = _random_params(config)
    positions = _random_positions(9).reshape(3, 4, 3)
    features = hash_grid_encode(positions, params, config)
    assert features.shape == (3, 4, config.n_output_dims)
    torch.testing.assert_close(
        features.reshape(12, -1), hash_grid_encode(positions.reshape(12, 3), params, config)
    )
    assert hash_grid_encode(torch.zeros(0, 3, dtype=torch.float64), params, config).shape == (
        0,
        config.n_output_dims,
    )


def test_module_initialisation_and_state_dict_round_trip():
    config = CONFIGS["mixed_f4"]
    module = HashGridEncoding(config, seed=5)
    assert list(module.state_dict()) == ["params"]
    assert module.params.shape == (config.n_params,) and module.params.dtype == torch.float32
    assert module.params.abs().max() <= 1e-4 and module.params.std() > 3e-5
    torch.testing.assert_close(module.params, HashGridEncoding(config, seed=5).params)
    other = HashGridEncoding(config, seed=6)
    assert not torch.equal(other.params, module.params)
    other.load_state_dict(module.state_dict())
    positions = torch.rand(20, 3)
    torch.testing.assert_close(other(positions), module(positions))
    torch.testing.assert_close(module(positions), hash_grid_encode(positions, module.params, config))
    assert module.n_output_dims == config.n_output_dims == module(positions).shape[1]
    assert [t.data_ptr() for t in module.level_tables()] == [
        t.data_ptr() for t in level_tables(module.params, config)
    ]


@pytest.mark.parametrize(
    "fields",
    [
        dict(n_levels=0),
        dict(n_levels=129),
        dict(n_features_per_level=3),
        dict(log2_hashmap_size=0),
        dict(log2_hashmap_size=32),
        dict(base_resolution=0),
        dict(per_level_scale=0.9),
        dict(per_level_scale=float("nan")),
        dict(interpolation="linear"),
        dict(n_levels=40, per_level_scale=2.0),
    ],
)
def test_invalid_configs_raise_avatar_error(fields):
    with pytest.raises(AvatarError):
        HashGridConfig(**fields)


def test_make_hash_grid_falls_back_to_torch_and_explains_missing_tcnn(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = CONFIGS["mixed_f4"]
    assert tcnn_unavailable_reason() is not None
    assert isinstance(make_hash_grid(config), HashGridEncoding)
    assert isinstance(make_hash_grid(config, "torch"), HashGridEncoding)
    with pytest.raises(AvatarError, match="CUDA is not available.*torch"):
        make_hash_grid(config, "tcnn")
    with pytest.raises(AvatarError, match="runs on a CUDA GPU"):
        make_hash_grid(config, "tcnn", device="cpu")
    with pytest.raises(AvatarError, match="unknown hash-grid backend"):
        make_hash_grid(config, "no-such-backend")


def test_tcnn_backend_wraps_tinycudann_encoding(monkeypatch):
    """With a stand-in for tinycudann.Encoding: config handed over, clamping, float32 output, shared state dict."""
    received = []

    class StandInEncoding(torch.nn.Module):
        def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
            super().__init__()
            assert n_input_dims == 3 and encoding_config["otype"] == "HashGrid"
            self.grid_config = HashGridConfig(**{k: v for k, v in encoding_config.items() if k != "otype"})
            self.params = torch.nn.Parameter(torch.zeros(self.grid_config.n_params))
            self.n_output_dims = self.grid_config.n_output_dims

        def forward(self, x):
            received.append(x)
            return hash_grid_encode(x, self.params, self.grid_config).half()

    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Encoding=StandInEncoding))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = CONFIGS["mixed_f4"]
    module = make_hash_grid(config)  # "auto" picks tcnn when it imports and CUDA is available
    assert isinstance(module, StandInEncoding) and module.config == config
    reference = HashGridEncoding(config, seed=2)
    reference.params.data.mul_(1e3)
    module.load_state_dict(reference.state_dict())
    positions = torch.tensor([[0.2, 1.5, -0.1], [0.3, 0.6, 0.9]])
    features = module(positions.reshape(1, 2, 3))
    assert features.dtype == torch.float32 and features.shape == (1, 2, config.n_output_dims)
    assert received[-1].min() >= 0 and received[-1].max() <= 1
    torch.testing.assert_close(features[0], reference(positions), atol=2e-3, rtol=1e-3)
    HashGridEncoding(config).load_state_dict(module.state_dict())


@pytest.mark.slow
def test_encoding_100k_points_stays_within_a_few_hundred_megabytes():
    script = textwrap.dedent(
        """
        import resource, torch
        from avatar.model.encoding import HashGridEncoding
        module = HashGridEncoding()
        module(torch.rand(100, 3, requires_grad=True)).sum().backward()  # params.grad exists from here on
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        positions = torch.rand(100_000, 3, requires_grad=True)
        module(positions).square().sum().backward()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_growth_mb = float(result.stdout.strip())
    assert peak_growth_mb < 300, f"peak memory grew by {peak_growth_mb:.0f} MB"


@pytest.mark.gpu
def test_cuda_matches_cpu():
    config = CONFIGS["mixed_f4"]
    params = _random_params(config, dtype=torch.float32)
    positions = _random_positions(1000, dtype=torch.float32)
    cpu = hash_grid_encode(positions, params, config)
    gpu = hash_grid_encode(positions.cuda(), params.cuda(), config)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-6, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(tcnn_unavailable_reason() is not None, reason="tinycudann is not usable here")
def test_matches_tinycudann():
    config = HashGridConfig(n_levels=8, log2_hashmap_size=15, base_resolution=8, per_level_scale=1.83)
    ours = HashGridEncoding(config, device="cuda")
    ours.params.data.uniform_(-1, 1)
    theirs = make_hash_grid(config, "tcnn")
    theirs.load_state_dict(ours.state_dict())
    positions = torch.rand(4096, 3, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    grad_out = torch.randn(4096, config.n_output_dims, device="cuda")
    for module in (ours, theirs):
        (module(positions) * grad_out).sum().backward()
    # tcnn's device exp2f may move grid coordinates by a few ulp of the scale.
    torch.testing.assert_close(theirs(positions), ours(positions), atol=5e-3, rtol=0)
    torch.testing.assert_close(theirs.params.grad, ours.params.grad, atol=5e-3, rtol=1e-3)


def test_corner_order_follows_tcnn_bits():
    config = HashGridConfig(n_levels=1, log2_hashmap_size=12, base_resolution=5, per_level_scale=1.0)
    level = config.level(0)
    assert level.dense and level.resolution == 5 and level.scale == 4.0
    # x = (0.1, 0.3, 0.6) -> grid (0.9, 1.7, 2.9) -> cell (0, 1, 2); corner c adds (c & 1, c >> 1 & 1, c >> 2 & 1).
    rows = grid_indices(torch.tensor([[0.1, 0.3, 0.6]]), config, 0)[0].tolist()
    expected = [x + 5 * y + 25 * z for z, y, x in itertools.product((2, 3), (1, 2), (0, 1))]
    assert rows == expected
