"""Multi-resolution hash-grid encoding (Instant-NGP) in plain PyTorch, laid out and hashed as tiny-cuda-nn does.

Matched against tiny-cuda-nn's master branch as of 2025: `include/tiny-cuda-nn/encodings/grid.h` (commit
2ec562e8: `GridEncodingTemplated`'s offset table, `kernel_grid`, `kernel_grid_backward`) and
`include/tiny-cuda-nn/common_device.h` (headers "Copyright 2020-2025": `grid_scale`, `grid_resolution`,
`grid_index` with the `MAX_BASES` overflow guard, `coherent_prime_hash`, `pos_fract` with `fmaf`). The 2022
grid.h computed the same scale inline and guarded `grid_index` with a loop condition; it gives the same rows.

Per level l of a config (n_levels L, n_features_per_level F, log2_hashmap_size T, base_resolution N0,
per_level_scale b), as tiny-cuda-nn computes it on the host in float32:
    scale_l      = exp2f(l * log2f(b)) * N0 - 1                    (`grid_scale`)
    resolution_l = ceil(scale_l) + 1                               (`grid_resolution`, vertices per axis)
    table_size_l = min(next_multiple(resolution_l ** 3, 8), 2 ** T)  (rows of the level's table)
    offset_l     = table_size_0 + ... + table_size_{l-1}
The flat parameter vector has `offset_L * F` entries: row r of level l, feature f is
`params[(offset_l + r) * F + f]` (a level's table is `params[offset_l * F:offset_{l+1} * F].view(-1, F)`).

A position x in [0, 1]^3 is encoded per level (`pos_fract`): p = fmaf(scale_l, x, 0.5), cell = floor(p),
t = p - cell. The +0.5 staggers the levels against each other (Instant-NGP, appendix A). The 8 corners are
`cell + (c & 1, c >> 1 & 1, c >> 2 & 1)` for c = 0..7 and their table rows are (`grid_index`):
    dense  (resolution_l ** 3 <= table_size_l):  (x + y * res + z * res ** 2) mod table_size_l
    hashed (otherwise):  (x * 1 ^ y * 2654435761 ^ z * 805459861 mod 2 ** 32) mod table_size_l
A corner coordinate can equal `resolution_l` (the +0.5 pushes the last cell past the grid): dense levels then
wrap into the next row or slice of the table, exactly as tiny-cuda-nn does. The level's features are the
trilinear blend of the 8 corner rows with weights prod_d (t_d or 1 - t_d) ("Linear"; "Smoothstep" blends with
smoothstep(t_d), "Nearest" takes corner 0); the output is [N, L * F] with level l in columns l*F:(l+1)*F.

Differences from tiny-cuda-nn, all deliberate:
- Positions are clamped to [0, 1] (tiny-cuda-nn wraps outside positions around to unrelated table rows);
  the gradient with respect to a clamped coordinate is zero. The tcnn backend of `make_hash_grid` clamps too.
- float32 is emulated as on tiny-cuda-nn's host: `grid_scale` with two roundings, `fmaf` with one. Its CUDA
  kernel evaluates `exp2f` on the device (within 2 ulp), so its scale can differ from ours by a few ulp, which
  moves grid coordinates by up to ~1e-3 of a cell at the finest default level. float64 parameters compute in
  float64 throughout (for gradcheck).
- Corner contributions are summed in a different order (no bitwise equality with the CUDA kernel).
- First derivatives only (w.r.t. parameters and positions); double backward raises.

The backward pass recomputes the corners instead of saving them, as tiny-cuda-nn does, so autograd keeps only
the positions, and levels are processed one after another: a forward and backward pass over 100k points with
the default config raises peak memory by about 160 MB on CPU, 50 MB of it the parameters' gradient.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from avatar.core.errors import AvatarError

N_POS_DIMS = 3
N_CORNERS = 1 << N_POS_DIMS
MAX_N_LEVELS = 128  # tiny-cuda-nn's MAX_N_LEVELS
Interpolation = Literal["Nearest", "Linear", "Smoothstep"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
COHERENT_PRIMES = (1, 2654435761, 805459861)
INIT_RANGE = 1e-4  # tiny-cuda-nn initialises grid parameters uniformly in [-1e-4, 1e-4]
TCNN_DEFAULT_SEED = 1337

_UINT32_MASK = 0xFFFFFFFF
_MAX_PARAMS_IN_LEVEL = _UINT32_MASK // 2  # std::numeric_limits<uint32_t>::max() / 2
_TABLE_ALIGNMENT = 8


@dataclass(frozen=True)
class HashGridLevel:
    """One level of a hash grid, as tiny-cuda-nn lays it out."""

    index: int
    scale: float  # grid coordinate of a position x is x * scale + 0.5 (a float32 value)
    resolution: int  # vertices per axis: ceil(scale) + 1
    table_size: int  # rows of the level's [table_size, F] table
    offset: int  # the level's first row in the flat table: params[(offset + row) * F + feature]
    hashed: bool  # rows from the coherent prime hash; False: dense rows x + y * res + z * res ** 2

    @property
    def dense(self) -> bool:
        return not self.hashed


@dataclass(frozen=True)
class HashGridConfig:
    """A 3D HashGrid encoding with tiny-cuda-nn's fields and defaults (`per_level_scale` excepted).

    The default per-level scale 2 ** (8 / 15) spans 16 levels from resolution 16 to 16 * 256 = 4096.
    """

    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    per_level_scale: float = 1.4472692374403782
    interpolation: Interpolation = "Linear"

    def __post_init__(self) -> None:
        fix = "Change it in the hash-grid configuration"
        if not 1 <= self.n_levels <= MAX_N_LEVELS:
            raise AvatarError(f"n_levels must be in [1, {MAX_N_LEVELS}], got {self.n_levels}", fix=fix)
        if self.n_features_per_level not in (1, 2, 4, 8):
            raise AvatarError(
                f"n_features_per_level must be 1, 2, 4 or 8 (as in tiny-cuda-nn), got {self.n_features_per_level}",
                fix=fix,
            )
        if not 1 <= self.log2_hashmap_size <= 31:
            raise AvatarError(f"log2_hashmap_size must be in [1, 31], got {self.log2_hashmap_size}", fix=fix)
        if self.base_resolution < 1:
            raise AvatarError(f"base_resolution must be at least 1, got {self.base_resolution}", fix=fix)
        if not (math.isfinite(self.per_level_scale) and self.per_level_scale >= 1.0):
            raise AvatarError(f"per_level_scale must be finite and >= 1, got {self.per_level_scale}", fix=fix)
        if self.interpolation not in INTERPOLATIONS:
            raise AvatarError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}",
                fix=fix,
            )
        finest = self.levels()[-1]
        if finest.resolution >= 1 << 24:
            raise AvatarError(
                f"the finest level has {finest.resolution} vertices per axis, more than float32 positions resolve",
                fix="Lower per_level_scale, n_levels or base_resolution",
            )

    def to_tcnn(self) -> dict:
        """The `encoding_config` of `tinycudann.Encoding(3, encoding_config)` for this grid."""
        return {
            "otype": "HashGrid",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": self.interpolation,
        }

    def levels(self) -> tuple[HashGridLevel, ...]:
        """Every level's scale, resolution, table size, offset and dense/hashed kind."""
        return _levels(self)

    def level(self, index: int) -> HashGridLevel:
        return self.levels()[index]

    def level_offsets(self) -> tuple[int, ...]:
        """tiny-cuda-nn's offset table: L + 1 row offsets, the last one the total number of rows."""
        levels = self.levels()
        return tuple(level.offset for level in levels) + (levels[-1].offset + levels[-1].table_size,)

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector: total rows * n_features_per_level."""
        return self.level_offsets()[-1] * self.n_features_per_level

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level


@functools.cache
def _levels(config: HashGridConfig) -> tuple[HashGridLevel, ...]:
    f32 = np.float32
    # std::log2 and exp2f are (all but) correctly rounded in float32: round the float64 results once.
    log2_per_level_scale = f32(math.log2(f32(config.per_level_scale)))
    levels = []
    offset = 0
    for index in range(config.n_levels):
        exponent = f32(index) * log2_per_level_scale
        scale = f32(f32(2.0 ** float(exponent)) * f32(config.base_resolution)) - f32(1.0)
        resolution = math.ceil(scale) + 1
        dense_rows = resolution**N_POS_DIMS
        # std::pow((float)res, N_POS_DIMS) is evaluated in double, then compared with (float)max_params == 2**31.
        params_in_level = (
            _MAX_PARAMS_IN_LEVEL if float(dense_rows) > float(f32(_MAX_PARAMS_IN_LEVEL)) else dense_rows
        )
        params_in_level = -(-params_in_level // _TABLE_ALIGNMENT) * _TABLE_ALIGNMENT
        table_size = min(params_in_level, 1 << config.log2_hashmap_size)
        hashed = table_size < dense_rows
        levels.append(HashGridLevel(index, float(scale), resolution, table_size, offset, hashed))
        offset += table_size
    return tuple(levels)


def level_tables(params: Tensor, config: HashGridConfig) -> list[Tensor]:
    """Views of the flat parameters as per-level tables.

    Args:
        params: Tensor  # [P] in tiny-cuda-nn's layout, P = config.n_params
    Returns:
        tables: list of L Tensors  # [table_size_l, F], views into `params`
    """
    if params.dim() != 1 or params.shape[0] != config.n_params:
        raise ValueError(f"params must have shape [{config.n_params}], got {list(params.shape)}")
    features = config.n_features_per_level
    return [
        params[level.offset * features : (level.offset + level.table_size) * features].view(
            level.table_size, features
        )
        for level in config.levels()
    ]


def flatten_level_tables(tables: Sequence[Tensor], config: HashGridConfig) -> Tensor:
    """The flat parameter vector [P] of per-level tables [table_size_l, F] (the inverse of `level_tables`)."""
    levels = config.levels()
    if len(tables) != len(levels):
        raise ValueError(f"expected {len(levels)} level tables, got {len(tables)}")
    for level, table in zip(levels, tables):
        if tuple(table.shape) != (level.table_size, config.n_features_per_level):
            raise ValueError(
                f"level {level.index} table must have shape [{level.table_size}, {config.n_features_per_level}], "
                f"got {list(table.shape)}"
            )
    return torch.cat([table.reshape(-1) for table in tables])


def checked_inputs(positions: Tensor, params: Tensor | Sequence[Tensor], config: HashGridConfig) -> Tensor:
    """The flat parameters [P] of `params` (flat or per-level tables), after checking both inputs' shapes and
    dtypes; raises ValueError naming what is wrong."""
    if not isinstance(params, Tensor):
        params = flatten_level_tables(params, config)
    level_tables(params, config)  # validates the shape
    if params.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"params must be float32 or float64, got {params.dtype}")
    if positions.shape[-1] != N_POS_DIMS:
        raise ValueError(f"positions must have shape [..., 3], got {list(positions.shape)}")
    if not positions.is_floating_point():
        raise ValueError(f"positions must be floating point, got {positions.dtype}")
    return params


def hash_grid_encode(positions: Tensor, params: Tensor | Sequence[Tensor], config: HashGridConfig) -> Tensor:
    """Encode positions with the hash grid `params` (first derivatives w.r.t. both).

    Args:
        positions: Tensor  # [..., 3] in [0, 1] (clamped); cast to the parameters' dtype first
        params: Tensor  # [P] in tiny-cuda-nn's flat layout, or a sequence of L tables [table_size_l, F]
        config: the grid the parameters belong to
    Returns:
        features: Tensor  # [..., L * F] in the parameters' dtype (float32 or float64); level l in l*F:(l+1)*F
    """
    params = checked_inputs(positions, params, config)
    batch_shape = positions.shape[:-1]
    flat = positions.reshape(-1, N_POS_DIMS).clamp(0.0, 1.0)
    features = _HashGridFunction.apply(flat, params, config)
    return features.reshape(*batch_shape, config.n_output_dims)


def grid_indices(positions: Tensor, config: HashGridConfig, level: int) -> Tensor:
    """Rows of level `level`'s table that each position's 8 corners read.

    Corner c is `cell + (c & 1, c >> 1 & 1, c >> 2 & 1)`; arithmetic is in `positions.dtype` (float32
    reproduces tiny-cuda-nn). Add `config.level(level).offset` for rows of the flat table.

    Args:
        positions: Tensor  # [N, 3] in [0, 1] (clamped), float32 or float64
    Returns:
        rows: Tensor  # [N, 8] int64 in [0, table_size)
    """
    if positions.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"positions must be float32 or float64, got {positions.dtype}")
    flat = positions.detach().reshape(-1, N_POS_DIMS).clamp(0.0, 1.0)
    cells, _ = _grid_coordinates(flat, config.level(level))
    return _corner_rows(cells, config.level(level))


def _grid_coordinates(positions: Tensor, level: HashGridLevel) -> tuple[Tensor, Tensor]:
    """tiny-cuda-nn's `pos_fract`: the cell [N, 3] int64 and the position in it [N, 3] in [0, 1)."""
    if positions.dtype == torch.float32:
        # fmaf(scale, x, 0.5f): the float64 product of two float32 values is exact, so one rounding remains.
        grid = (positions.double() * level.scale + 0.5).float()
    else:
        grid = positions * level.scale + 0.5
    cells = torch.floor(grid)
    return cells.long(), grid - cells


def _corner_rows(cells: Tensor, level: HashGridLevel) -> Tensor:
    """tiny-cuda-nn's `grid_index` for the 8 corners of each cell [N, 3]: rows [N, 8] int64."""
    x, y, z = torch.stack([cells, cells + 1], dim=-1).unbind(1)  # each [N, 2]: low and high corner
    if level.hashed:
        _, prime_y, prime_z = COHERENT_PRIMES
        rows = _corner_combine(
            x, (y * prime_y) & _UINT32_MASK, (z * prime_z) & _UINT32_MASK, torch.bitwise_xor
        )
    else:
        res = level.resolution
        rows = _corner_combine(x, y * res, z * (res * res), torch.add) & _UINT32_MASK
    size = level.table_size
    return rows & (size - 1) if size & (size - 1) == 0 else rows % size


def _corner_combine(x: Tensor, y: Tensor, z: Tensor, op) -> Tensor:
    """op over per-axis [N, 2] terms for the 8 corners [N, 8]; bit d of the corner number picks axis d's high end."""
    return op(op(x[:, None, None, :], y[:, None, :, None]), z[:, :, None, None]).reshape(-1, N_CORNERS)


def _axis_weights(fractions: Tensor, interpolation: str) -> tuple[Tensor, Tensor]:
    """Per-axis weights of the low and high corner [N, 3, 2] and their derivatives w.r.t. the grid coordinate."""
    if interpolation == "Linear":
        high, slope = fractions, torch.ones_like(fractions)
    elif interpolation == "Smoothstep":
        high = fractions * fractions * (3.0 - 2.0 * fractions)
        slope = 6.0 * fractions * (1.0 - fractions)
    else:  # Nearest: corner 0 only, constant in the position
        high, slope = torch.zeros_like(fractions), torch.zeros_like(fractions)
    return torch.stack([1.0 - high, high], dim=-1), torch.stack([-slope, slope], dim=-1)


def _corner_weights(axis_weights: Tensor) -> Tensor:
    """Products of per-axis weights [N, 3, 2] for the 8 corners [N, 8], multiplied in tiny-cuda-nn's order x, y, z."""
    return _corner_combine(axis_weights[:, 0], axis_weights[:, 1], axis_weights[:, 2], torch.mul)


def _corner_weight_gradient(grad_corners: Tensor, axis_weights: Tensor, axis_slopes: Tensor) -> Tensor:
    """sum_c grad_corners[:, c] * d weight_c / d grid coordinate, per axis [N, 3], contracting one axis at a time."""
    grad = grad_corners.view(-1, 2, 2, 2)  # [N, z, y, x]
    weight_x, weight_y, weight_z = axis_weights.unbind(1)  # each [N, 2]
    grad_yx = (grad * weight_z[:, :, None, None]).sum(1)
    grad_zy = (grad * weight_x[:, None, None, :]).sum(3)
    along_x = (grad_yx * weight_y[:, :, None]).sum(1)
    along_y = (grad_yx * weight_x[:, None, :]).sum(2)
    along_z = (grad_zy * weight_y[:, None, :]).sum(2)
    return (torch.stack([along_x, along_y, along_z], dim=1) * axis_slopes).sum(-1)


def _gather_rows(table: Tensor, rows: Tensor) -> Tensor:
    """table [T, F] rows [N, 8] -> [N, 8, F]."""
    return table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])


class _HashGridFunction(torch.autograd.Function):
    """Hash-grid lookup whose backward pass recomputes corners and weights instead of saving them."""

    @staticmethod
    def forward(ctx, positions: Tensor, params: Tensor, config: HashGridConfig) -> Tensor:
        ctx.config = config
        ctx.save_for_backward(positions, params)
        work = positions.to(params.dtype)
        features = config.n_features_per_level
        out = params.new_empty(work.shape[0], config.n_output_dims)
        for level, table in zip(config.levels(), level_tables(params, config)):
            cells, fractions = _grid_coordinates(work, level)
            weights = _corner_weights(_axis_weights(fractions, config.interpolation)[0])
            values = _gather_rows(table, _corner_rows(cells, level))  # [N, 8, F]
            out[:, level.index * features : (level.index + 1) * features] = torch.bmm(
                weights.unsqueeze(1), values
            ).squeeze(1)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        positions, params = ctx.saved_tensors
        config: HashGridConfig = ctx.config
        need_positions, need_params = ctx.needs_input_grad[:2]
        work = positions.to(params.dtype)
        grad_out = grad_out.to(params.dtype)
        features = config.n_features_per_level
        grad_params = torch.zeros_like(params) if need_params else None
        grad_tables = level_tables(grad_params, config) if need_params else None
        grad_work = torch.zeros_like(work) if need_positions else None
        for level, table in zip(config.levels(), level_tables(params, config)):
            grad_level = grad_out[:, level.index * features : (level.index + 1) * features]  # [N, F]
            cells, fractions = _grid_coordinates(work, level)
            rows = _corner_rows(cells, level)
            axis_weights, axis_slopes = _axis_weights(fractions, config.interpolation)
            if need_params:
                weights = _corner_weights(axis_weights)
                contributions = weights.unsqueeze(-1) * grad_level.unsqueeze(1)  # [N, 8, F]
                grad_tables[level.index].index_add_(0, rows.reshape(-1), contributions.reshape(-1, features))
            if need_positions:
                grad_corners = torch.bmm(_gather_rows(table, rows), grad_level.unsqueeze(-1))  # [N, 8, 1]
                grad_work += level.scale * _corner_weight_gradient(grad_corners, axis_weights, axis_slopes)
        grad_positions = grad_work.to(positions.dtype) if need_positions else None
        return grad_positions, grad_params, None


class HashGridEncoding(nn.Module):
    """A hash grid holding its parameters as one flat `params` vector in tiny-cuda-nn's layout.

    The state dict is `{"params": [P]}`, the same as `tinycudann.Encoding(3, config.to_tcnn())`'s, so either
    module loads the other's. Parameters start uniform in [-1e-4, 1e-4] as in tiny-cuda-nn (from a torch
    generator seeded with `seed`; tiny-cuda-nn's own pcg32 draws differ).
    """

    def __init__(
        self,
        config: HashGridConfig | None = None,
        *,
        seed: int | None = TCNN_DEFAULT_SEED,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.config = config if config is not None else HashGridConfig()
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        initial = torch.empty(self.config.n_params, dtype=dtype).uniform_(
            -INIT_RANGE, INIT_RANGE, generator=generator
        )
        self.params = nn.Parameter(initial.to(device))

    @property
    def n_output_dims(self) -> int:
        return self.config.n_output_dims

    def level_tables(self) -> list[Tensor]:
        """Views of `params` as per-level tables [table_size_l, F]."""
        return level_tables(self.params, self.config)

    def forward(self, positions: Tensor) -> Tensor:
        """positions [..., 3] in [0, 1] (clamped) -> features [..., L * F] in the parameters' dtype."""
        return hash_grid_encode(positions, self.params, self.config)

    def extra_repr(self) -> str:
        return f"{self.config}, n_params={self.config.n_params}"
