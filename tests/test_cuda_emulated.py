"""The CUDA kernels of cuda_ext/csrc, run on the CPU by tests/cuda_emulator.cpp, against the PyTorch reference.

Each kernel runs as written (thread indexing, shared-memory batches, barriers, warp reductions, atomics), one
block at a time with its threads as fibers. `EmulatedExtension` offers the functions of the compiled extension
(cuda_ext/csrc/bindings.cpp) with their host-side steps (cumsum, stable sort on the same key bits) repeated in
Python, so the autograd wrappers of cuda_ext run on it too. Comparisons go stage by stage, as
tests/test_cuda_parity.py does on a GPU: projection, tile lists, compositing, hash grid, whole backends.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar.model.encoding.hash_grid import HashGridConfig, hash_grid_encode
from avatar.render import (
    ALPHA_MIN,
    TILE_SIZE,
    alpha_half_extents,
    bin_gaussians,
    project_gaussians,
    rasterize,
    rasterize_to_pixels_torch,
)
from tests.cuda_checks import (
    assert_images_close,
    assert_rows_close,
    float32_scene,
    moved_camera,
    relative_error,
    upper_triangle,
)

SOURCES = Path(__file__).resolve().parents[1] / "cuda_ext" / "csrc"
EMULATOR = Path(__file__).resolve().parent / "cuda_emulator.cpp"

pytestmark = [
    pytest.mark.slow,  # building the emulator takes a few seconds, the scenes a few more
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator's fibers need glibc"),
]

_P, _I32, _I64, _F32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {
    "emu_project_forward": [_I32, _P, _P, _P, _P, _P, _I32, _I32, _F32, _F32, _F32] + [_P] * 5,
    "emu_project_backward": [_I32, _P, _P, _P, _P, _P, _I32, _I32, _F32] + [_P] * 8,
    "emu_count_tiles": [_I32, _P, _P, _P, _P, _I32, _I32, _P],
    "emu_write_tile_keys": [_I32, _P, _P, _P, _P, _P, _P, _I32, _I32, _P, _P],
    "emu_tile_offsets": [_I32, _I32, _P, _P],
    "emu_rasterize_forward": [_I32, _I32, _I32] + [_P] * 10,
    "emu_rasterize_backward": [_I32, _I32, _I32] + [_P] * 15,
    "emu_hash_grid_forward": [_I32, _I32, _I64, _I32, _P, _P, _P, _P, _I32, _P],
    "emu_hash_grid_backward": [_I32, _I32, _I64, _I32, _P, _P, _P, _P, _I32, _P, _P, _P],
}
EMULATED_FEATURE_COUNTS = [1, 2, 3, 4, 5, 8, 16, 32, 64]  # EMU_FOR_EACH_FEATURE_COUNT in the emulator


class EmulatedExtension:
    """The functions of the compiled extension (same names, arguments and results) on CPU tensors."""

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))
        self.lib.emu_last_error.restype = ctypes.c_char_p
        for name, argtypes in _SIGNATURES.items():
            function = getattr(self.lib, name)
            function.argtypes = argtypes
            function.restype = ctypes.c_int

    def _call(self, name: str, *args) -> None:
        """Tensors are passed as pointers to contiguous data (outputs must be contiguous already)."""
        keep = [a.detach().contiguous() if isinstance(a, torch.Tensor) else a for a in args]
        converted = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in keep]
        if getattr(self.lib, name)(*converted) != 0:
            raise RuntimeError(self.lib.emu_last_error().decode())

    def project_forward(self, means, quats, scales, viewmat, K, width, height, near_plane, far_plane, eps2d):
        n = means.shape[0]
        outputs = [torch.empty(n, 2), torch.empty(n, 3), torch.empty(n), torch.empty(n, dtype=torch.int32)]
        outputs.append(torch.empty(n, 3))
        args = (means, quats, scales, viewmat, K, width, height, near_plane, far_plane, eps2d, *outputs)
        self._call("emu_project_forward", n, *args)
        return outputs

    def project_backward(
        self,
        means,
        quats,
        scales,
        viewmat,
        K,
        width,
        height,
        eps2d,
        radii,
        v_means2d,
        v_conics,
        v_depths,
        need,
    ):
        n = means.shape[0]
        grads = [torch.empty(n, 3), torch.empty(n, 4), torch.empty(n, 3), torch.empty(n if need else 0, 12)]
        inputs = (
            means,
            quats,
            scales,
            viewmat,
            K,
            width,
            height,
            eps2d,
            radii,
            v_means2d,
            v_conics,
            v_depths,
        )
        self._call("emu_project_backward", n, *inputs, *grads[:3], grads[3] if need else None)
        return grads

    def intersect_tiles(self, means2d, radii, depths, cov2d, opacities, width, height):
        n = means2d.shape[0]
        tiles_x, tiles_y = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
        counts = torch.empty(n, dtype=torch.int32)
        self._call("emu_count_tiles", n, means2d, radii, cov2d, opacities, tiles_x, tiles_y, counts)
        entries_end = torch.cumsum(counts, 0, dtype=torch.int64)
        m = int(entries_end[-1]) if n else 0
        keys, ids = torch.empty(m, dtype=torch.int64), torch.empty(m, dtype=torch.int32)
        offsets = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.int32)
        if m:
            args = (means2d, radii, cov2d, opacities, depths, entries_end, tiles_x, tiles_y, keys, ids)
            self._call("emu_write_tile_keys", n, *args)
            # cub sorts the bits [0, 32 + bit_length(num_tiles)) stably; so does this.
            unsigned = keys.numpy().view(np.uint64)
            sort_bits = unsigned & np.uint64((1 << (32 + (tiles_x * tiles_y).bit_length())) - 1)
            order = torch.from_numpy(np.argsort(sort_bits, kind="stable"))
            keys, ids = keys[order].contiguous(), ids[order].contiguous()
            self._call("emu_tile_offsets", m, tiles_x * tiles_y, keys, offsets)
        return keys, ids, offsets, counts

    def rasterize_feature_counts(self):
        return list(EMULATED_FEATURE_COUNTS)

    def rasterize_forward(
        self, means2d, conics, opacities, features, background, offsets, ids, width, height
    ):
        f = features.shape[1]
        outputs = [torch.empty(height, width, f), torch.empty(height, width)]
        outputs.append(torch.empty(height, width, dtype=torch.int32))
        args = (means2d, conics, opacities, features, background, offsets, ids, *outputs)
        self._call("emu_rasterize_forward", f, width, height, *args)
        return outputs

    def rasterize_backward(
        self,
        means2d,
        conics,
        opacities,
        features,
        background,
        offsets,
        ids,
        alphas,
        last,
        v_out,
        v_alphas,
        w,
        h,
    ):
        n, f = features.shape
        grads = [torch.zeros(n, 2), torch.zeros(n, 3), torch.zeros(n), torch.zeros(n, f)]
        args = (means2d, conics, opacities, features, background, offsets, ids, alphas, last, v_out, v_alphas)
        self._call("emu_rasterize_backward", f, w, h, *args, *grads)
        return grads

    def hash_grid_forward(
        self, positions, params, level_scales, level_info, features_per_level, interpolation
    ):
        features = torch.empty(positions.shape[0], len(level_scales) * features_per_level, dtype=params.dtype)
        args = (positions, params, level_scales, level_info, interpolation, features)
        double = int(params.dtype == torch.float64)
        self._call(
            "emu_hash_grid_forward", double, features_per_level, positions.shape[0], len(level_scales), *args
        )
        return features

    def hash_grid_backward(
        self,
        positions,
        params,
        level_scales,
        level_info,
        features_per_level,
        interpolation,
        grad,
        need_params,
        need_positions,
    ):
        grad_params, grad_positions = torch.zeros_like(params), torch.empty_like(positions)
        args = (positions, params, level_scales, level_info, interpolation, grad, grad_params, grad_positions)
        double = int(params.dtype == torch.float64)
        self._call(
            "emu_hash_grid_backward", double, features_per_level, positions.shape[0], len(level_scales), *args
        )
        empty_params, empty_positions = params.new_empty(0), positions.new_empty(0, 3)
        return (
            grad_params if need_params else empty_params,
            grad_positions if need_positions else empty_positions,
        )


@pytest.fixture(scope="module")
def ext(tmp_path_factory) -> EmulatedExtension:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel emulator")
    library = tmp_path_factory.mktemp("emulator") / "cuda_emulator.so"
    flags = [
        "-std=c++17",
        "-O2",
        "-shared",
        "-fPIC",
        "-ffp-contract=off",
        "-Wall",
        "-Werror",
        "-Wno-unknown-pragmas",
    ]
    result = subprocess.run(
        [compiler, *flags, f"-I{SOURCES}", str(EMULATOR), "-o", str(library)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return EmulatedExtension(library)


@pytest.fixture
def emulated_backends(ext, monkeypatch) -> EmulatedExtension:
    """cuda_ext's "cuda" rasterizer and hash grid running on the emulated extension with CPU tensors."""
    import cuda_ext.hash_grid
    import cuda_ext.rasterize

    monkeypatch.setattr(cuda_ext.rasterize, "load_extension", lambda: ext)
    monkeypatch.setattr(cuda_ext.rasterize, "unsupported_reason", lambda *args: None)
    monkeypatch.setattr(cuda_ext.hash_grid, "load_extension", lambda: ext)
    return ext


# ---- projection ----------------------------------------------------------------------------------------------


def projection_inputs(seed: int, num: int = 400, width: int = 70, height: int = 50):
    scene = float32_scene(num, width, height, seed)
    means = scene["means"].clone()
    means[:5, 2] = -means[:5, 2]  # behind the camera: culled by depth
    return dict(
        means=means,
        quats=scene["quats"],
        scales=scene["scales"],
        viewmat=moved_camera() if seed % 2 else scene["viewmat"],
        K=scene["K"],
        width=width,
        height=height,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_forward_matches_project_gaussians(ext, seed):
    inputs = projection_inputs(seed)
    means2d, conics, depths, radii, cov2d = ext.project_forward(
        **inputs, near_plane=0.01, far_plane=1e10, eps2d=0.3
    )
    reference = project_gaussians(**inputs)
    reference64 = project_gaussians(**{k: v.double() if torch.is_tensor(v) else v for k, v in inputs.items()})
    visible = reference.radii > 0
    assert 50 < int(visible.sum()) < len(visible) - 5
    # Radii are ceil()ed: rounding may move a handful by one pixel.
    assert int((radii != reference.radii).sum()) <= 2 and int((radii - reference.radii).abs().max()) <= 1
    torch.testing.assert_close(depths, reference.depths, rtol=1e-6, atol=1e-6)
    both = visible & (radii > 0)
    assert (
        (means2d[radii == 0] == 0).all()
        and (conics[radii == 0] == 0).all()
        and (cov2d[radii == 0] == 0).all()
    )
    torch.testing.assert_close(means2d[both], reference.means2d[both], rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(cov2d[both], upper_triangle(reference.cov2d)[both], rtol=1e-5, atol=1e-5)
    # The conic inverts a possibly ill-conditioned matrix: as close to float64 as torch's float32 result is.
    error = (conics[both].double() - reference64.conics[both]).abs().max()
    torch_error = (reference.conics[both].double() - reference64.conics[both]).abs().max()
    assert error <= 4 * torch_error + 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_backward_matches_autograd(ext, seed):
    inputs = projection_inputs(seed)
    _, _, _, radii, _ = ext.project_forward(**inputs, near_plane=0.01, far_plane=1e10, eps2d=0.3)
    gen = torch.Generator().manual_seed(seed + 10)
    n = inputs["means"].shape[0]
    v_means2d, v_conics, v_depths = (torch.randn(n, k, generator=gen) for k in (2, 3, 1))
    v_depths = v_depths[:, 0]
    args = [inputs[k] for k in ("means", "quats", "scales", "viewmat", "K", "width", "height")]
    v_means, v_quats, v_scales, v_rows = ext.project_backward(
        *args, 0.3, radii, v_means2d, v_conics, v_depths, True
    )
    v_viewmat = torch.zeros(4, 4, dtype=torch.float64)
    v_viewmat[:3] = v_rows.double().sum(0).view(3, 4)

    leaves = {k: inputs[k].double().requires_grad_() for k in ("means", "quats", "scales", "viewmat")}
    reference = project_gaussians(
        **leaves, K=inputs["K"].double(), width=inputs["width"], height=inputs["height"]
    )
    assert torch.equal(reference.radii, radii), "radii differ: choose another seed for the gradient test"
    loss = (reference.means2d * v_means2d.double()).sum() + (reference.conics * v_conics.double()).sum()
    loss = loss + (reference.depths * v_depths.double()).sum()
    expected = torch.autograd.grad(loss, list(leaves.values()))
    for name, actual, want in zip(("means", "quats", "scales"), (v_means, v_quats, v_scales), expected[:3]):
        # Per Gaussian relative to its largest entry: gradients span many orders of magnitude.
        scale = want.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        error = ((actual.double() - want).abs() / scale).amax(dim=1)
        assert float(error.quantile(0.99)) < 1e-3 and float(error.max()) < 5e-2, name
    assert relative_error(v_viewmat, expected[3]) < 2e-3


# ---- tile intersection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num, width, height, seed", [(300, 64, 48, 0), (500, 61, 45, 1), (40, 16, 16, 2)])
def test_tile_lists_match_bin_gaussians(ext, num, width, height, seed):
    scene = float32_scene(num, width, height, seed)
    scene["opacities"][::7] = 0.5 * ALPHA_MIN  # drawn nowhere, as in the reference
    projection = project_gaussians(
        scene["means"], scene["quats"], scene["scales"], scene["viewmat"], scene["K"], width, height
    )
    keys, ids, offsets, counts = ext.intersect_tiles(
        projection.means2d,
        projection.radii,
        projection.depths,
        upper_triangle(projection.cov2d),
        scene["opacities"],
        width,
        height,
    )
    bins = bin_gaussians(
        projection.means2d,
        projection.radii * (scene["opacities"] >= ALPHA_MIN),
        projection.depths,
        width,
        height,
        half_extents=alpha_half_extents(projection.cov2d, scene["opacities"], ALPHA_MIN),
    )
    assert len(ids) == len(bins.gaussian_ids) > num // 2
    assert torch.equal(ids.long(), bins.gaussian_ids)
    assert torch.equal(keys >> 32, bins.tile_ids)
    assert torch.equal(offsets.long(), bins.offsets)
    assert torch.equal(counts.long(), torch.bincount(bins.gaussian_ids, minlength=num))


def test_tile_offsets_with_empty_tiles_and_one_entry(ext):
    keys, ids, offsets, _ = ext.intersect_tiles(
        torch.tensor([[40.0, 8.0]]),
        torch.tensor([3], dtype=torch.int32),
        torch.tensor([1.0]),
        torch.tensor([[1.0, 0.0, 1.0]]),
        torch.tensor([0.9]),
        64,
        32,
    )
    assert ids.tolist() == [0] and int(keys[0]) >> 32 == 2
    assert offsets.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1]


# ---- compositing ---------------------------------------------------------------------------------------------


def composite_inputs(num, width, height, seed, channels, kind):
    """A projected float32 scene, its torch tile bins, and those as the kernels' int32 ids and offsets.

    kind: "plain" (random_scene), "dense" (long per-tile lists, clamped alphas, early termination) or
    "faint" (long per-tile lists of faint Gaussians that many pixels composite past the first batch).
    """
    scene = float32_scene(num, width, height, seed, channels=channels)
    if kind == "dense":
        scene["opacities"] = 0.3 + 0.7 * scene["opacities"]
        scene["opacities"][::4] = 1.0
        scene["scales"] = scene["scales"] * 2.0
    elif kind == "faint":
        scene["opacities"] = 0.01 + 0.03 * scene["opacities"]
        scene["scales"] = scene["scales"] * 2.0
    projection = project_gaussians(
        scene["means"], scene["quats"], scene["scales"], scene["viewmat"], scene["K"], width, height
    )
    bins = bin_gaussians(
        projection.means2d,
        projection.radii * (scene["opacities"] >= ALPHA_MIN),
        projection.depths,
        width,
        height,
        half_extents=alpha_half_extents(projection.cov2d, scene["opacities"], ALPHA_MIN),
    )
    features = torch.cat([scene["colors"], projection.depths[:, None]], dim=1).contiguous()
    means2d, conics = projection.means2d.contiguous(), projection.conics.contiguous()
    return means2d, conics, scene["opacities"], features, bins


def tile_start_of_pixels(offsets, width, height):
    """The first entry of each pixel's tile [H, W]."""
    tiles_x = math.ceil(width / TILE_SIZE)
    rows = torch.arange(height)[:, None] // TILE_SIZE
    cols = torch.arange(width)[None, :] // TILE_SIZE
    return offsets.long()[rows * tiles_x + cols]


CASES = [
    # num, width, height, seed, channels, kind
    (1, 16, 16, 0, 3, "plain"),
    (200, 64, 48, 0, 3, "plain"),
    (300, 37, 29, 1, 1, "plain"),
    (150, 40, 24, 2, 4, "plain"),
    (900, 32, 32, 3, 2, "dense"),
    (1200, 20, 36, 4, 7, "dense"),
    (1500, 32, 24, 5, 3, "faint"),
    (400, 24, 24, 6, 15, "dense"),  # 16 features (with depth)
    (120, 20, 20, 7, 31, "plain"),  # 32
    (250, 20, 20, 8, 63, "plain"),  # 64
]


@pytest.mark.parametrize("num, width, height, seed, channels, kind", CASES)
@pytest.mark.parametrize("with_background", [False, True])
def test_compositing_forward_matches_torch(ext, num, width, height, seed, channels, kind, with_background):
    means2d, conics, opacities, features, bins = composite_inputs(num, width, height, seed, channels, kind)
    ids, offsets = bins.gaussian_ids.int(), bins.offsets.int()
    gen = torch.Generator().manual_seed(seed)
    background = torch.rand(features.shape[1], generator=gen) if with_background else None
    if kind != "plain":
        assert int(bins.counts.max()) > 256, "the scene must need several shared-memory batches"
    image, alphas, last = ext.rasterize_forward(
        means2d, conics, opacities, features, background, offsets, ids, width, height
    )
    as64 = [t.double() for t in (means2d, conics, opacities, features)]
    expected, expected_alpha = rasterize_to_pixels_torch(*as64, bins, width, height)
    if background is not None:
        expected = expected + (1 - expected_alpha) * background.double()
    assert (last >= -1).all() and int(last.max()) < len(ids)
    if kind == "faint":  # many pixels composite past their tile's first batch of 256
        assert float((last.long() - tile_start_of_pixels(offsets, width, height) >= 256).float().mean()) > 0.3
    # A pixel whose transmittance crosses 1e-4 within rounding may stop one Gaussian earlier or later.
    assert_images_close("features", image, expected, atol=1e-4, max_bad_fraction=0.002)
    assert_images_close("alpha", alphas[..., None], expected_alpha, atol=1e-5, max_bad_fraction=0.002)


@pytest.mark.parametrize("num, width, height, seed, channels, kind", CASES)
@pytest.mark.parametrize("with_background", [False, True])
def test_compositing_backward_matches_autograd(
    ext, num, width, height, seed, channels, kind, with_background
):
    means2d, conics, opacities, features, bins = composite_inputs(num, width, height, seed, channels, kind)
    ids, offsets = bins.gaussian_ids.int(), bins.offsets.int()
    gen = torch.Generator().manual_seed(seed + 100)
    background = torch.rand(features.shape[1], generator=gen) if with_background else None
    inputs = (means2d, conics, opacities, features, background, offsets, ids)
    _, alphas, last = ext.rasterize_forward(*inputs, width, height)
    v_out = torch.randn(height, width, features.shape[1], generator=gen)
    v_alphas = torch.randn(height, width, generator=gen)
    actual = ext.rasterize_backward(*inputs, alphas, last, v_out, v_alphas, width, height)

    leaves = [t.double().requires_grad_() for t in (means2d, conics, opacities, features)]
    image, alpha = rasterize_to_pixels_torch(*leaves, bins, width, height)
    if background is not None:
        image = image + (1 - alpha) * background.double()
    loss = (image * v_out.double()).sum() + (alpha[..., 0] * v_alphas.double()).sum()
    expected = torch.autograd.grad(loss, leaves)
    for name, got, want in zip(("means2d", "conics", "opacities", "features"), actual, expected):
        assert_rows_close(name, got, want, rtol=1e-3, max_bad_fraction=0.01)
        assert relative_error(got.sum(0), want.sum(0)) < 1e-2, name


# ---- the backends on the emulated extension ------------------------------------------------------------------


def backend_scene(seed, num=250, width=45, height=38, channels=3):
    scene = float32_scene(num, width, height, seed, channels=channels)
    scene["viewmat"] = moved_camera() if seed % 2 else scene["viewmat"]
    return scene


@pytest.mark.parametrize(
    "seed, channels, background_kind", [(0, 3, None), (1, 3, "channel"), (2, 6, "image"), (3, 1, "channel")]
)
def test_cuda_backend_matches_torch_backend(emulated_backends, seed, channels, background_kind):
    """rasterize(backend="cuda") on the emulated kernels: image, radii and every gradient, incl. means2d.grad."""
    scene = backend_scene(seed, channels=channels)
    width, height = scene["width"], scene["height"]
    gen = torch.Generator().manual_seed(seed + 1)
    background = {
        None: None,
        "channel": torch.rand(channels, generator=gen),
        "image": torch.rand(height, width, channels, generator=gen),
    }[background_kind]
    names = ["means", "quats", "scales", "opacities", "colors", "viewmat"]
    weights = [torch.randn(height, width, k, generator=gen, dtype=torch.float64) for k in (channels, 1, 1)]

    def run(backend, dtype):
        leaves = {k: scene[k].to(dtype, copy=True).requires_grad_() for k in names}
        extra = {} if background is None else {"background": background.to(dtype, copy=True).requires_grad_()}
        out = rasterize(
            **leaves, K=scene["K"].to(dtype), width=width, height=height, backend=backend, **extra
        )
        out.means2d.retain_grad()
        loss = sum((image.double() * w).sum() for image, w in zip((out.rgb, out.alpha, out.depth), weights))
        loss.backward()
        grads = {k: v.grad for k, v in {**leaves, **extra}.items()}
        return out, grads

    out, grads = run("cuda", torch.float32)
    reference, reference_grads = run("torch", torch.float64)
    assert out.rgb.dtype == torch.float32 and out.rgb.shape == (height, width, channels)
    assert out.radii.dtype == torch.int32 and int((out.radii != reference.radii).sum()) <= 2
    for name in ("rgb", "alpha", "depth"):
        assert_images_close(
            name, getattr(out, name), getattr(reference, name), atol=1e-4, max_bad_fraction=0.002
        )
    assert out.means2d.grad is not None
    assert_rows_close("means2d", out.means2d.grad, reference.means2d.grad, rtol=2e-3, max_bad_fraction=0.02)
    for name, expected in reference_grads.items():
        actual = grads[name]
        if name in ("viewmat", "background"):
            assert relative_error(actual, expected) < 1e-2, name
        else:
            assert_rows_close(name, actual, expected, rtol=5e-3, max_bad_fraction=0.02, atol_scale=1e-3)


def test_cuda_backend_pads_features_to_a_compiled_count(emulated_backends):
    from cuda_ext.rasterize import feature_padding

    assert [feature_padding(f) for f in (1, 3, 5, 6, 8, 9, 17, 33, 64)] == [0, 0, 0, 2, 0, 7, 15, 31, 0]
    with pytest.raises(Exception, match="at most 64 features"):
        feature_padding(65)


# ---- hash grid -----------------------------------------------------------------------------------------------

HASH_CONFIGS = {
    "dense_and_hashed_f2": HashGridConfig(
        n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=1.9
    ),
    "f1": HashGridConfig(
        n_levels=5, n_features_per_level=1, log2_hashmap_size=8, base_resolution=3, per_level_scale=2.0
    ),
    "f4_dense": HashGridConfig(
        n_levels=3, n_features_per_level=4, log2_hashmap_size=12, base_resolution=5, per_level_scale=1.37
    ),
    "f8": HashGridConfig(
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


def hash_inputs(config, dtype, seed=0, count=700):
    gen = torch.Generator().manual_seed(seed)
    params = (torch.rand(config.n_params, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)
    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5]], dtype=torch.float64)
    # Some positions outside [0, 1]: the wrapper clamps them (zero gradient), as hash_grid_encode does.
    positions = torch.cat([corners, torch.rand(count, 3, generator=gen, dtype=torch.float64) * 1.1 - 0.05])
    return positions.to(dtype), params


def test_hash_configs_cover_dense_and_hashed_levels():
    kinds = {level.hashed for config in HASH_CONFIGS.values() for level in config.levels()}
    assert kinds == {True, False}


@pytest.mark.parametrize("name", list(HASH_CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hash_grid_matches_reference(emulated_backends, name, dtype):
    from avatar.model.encoding.hash_grid_cuda import encode_clamped

    config = HASH_CONFIGS[name]
    positions, params = hash_inputs(config, dtype)
    grad_out = torch.randn(len(positions), config.n_output_dims, generator=torch.Generator().manual_seed(5))
    grad_out = grad_out.to(dtype)

    def run(encode):
        leaves = [positions.clone().requires_grad_(), params.clone().requires_grad_()]
        features = encode(*leaves)
        return (features.detach(), *torch.autograd.grad(features, leaves, grad_out))

    # hash_grid_encode_cuda requires CUDA tensors; encode_clamped is the same call without that check.
    cuda = run(lambda p, q: encode_clamped(p.clamp(0.0, 1.0), q, config))
    reference = run(lambda p, q: hash_grid_encode(p, q, config))
    exact = dtype == torch.float64
    tolerances = {
        "features": dict(atol=1e-12, rtol=1e-12) if exact else dict(atol=2e-6, rtol=1e-5),
        "positions": dict(atol=1e-9, rtol=1e-9) if exact else dict(atol=1e-3, rtol=1e-4),
        "params": dict(atol=1e-12, rtol=1e-12) if exact else dict(atol=2e-6, rtol=1e-5),
    }
    for name_, actual, expected in zip(tolerances, cuda, reference):
        assert actual.dtype == dtype, name_
        torch.testing.assert_close(actual, expected, **tolerances[name_], msg=name_)
