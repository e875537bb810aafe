"""The hash-grid encoding on this package's kernels, as an autograd Function on plain tensors.

The grid's layout (the levels' scales, resolutions, table sizes, offsets and whether each is hashed), hashing,
+0.5 offset and float32/float64 arithmetic are those of the PyTorch reference
(avatar.model.encoding.hash_grid.hash_grid_encode); the float32 grid coordinate is one fmaf, as
tiny-cuda-nn's. First derivatives w.r.t. positions and parameters; the parameter gradient is accumulated with
atomicAdd, so its summation order (not its value) varies run to run.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from cuda_ext.build import load_extension

INTERPOLATIONS = ("Nearest", "Linear", "Smoothstep")  # the kernel's interpolation codes (csrc/hash_grid.cuh)


class _HashGridCudaFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, params, level_scales, level_info, features_per_level, interpolation):
        work = positions.to(params.dtype).contiguous()
        ctx.layout = (level_scales, level_info, features_per_level, interpolation)
        ctx.positions_dtype = positions.dtype
        ctx.save_for_backward(work, params)
        return load_extension().hash_grid_forward(
            work, params, level_scales, level_info, features_per_level, interpolation
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        work, params = ctx.saved_tensors
        level_scales, level_info, features_per_level, interpolation = ctx.layout
        need_positions, need_params = ctx.needs_input_grad[:2]
        grad_params, grad_work = load_extension().hash_grid_backward(
            work,
            params,
            level_scales,
            level_info,
            features_per_level,
            interpolation,
            grad_out.to(params.dtype).contiguous(),
            need_params,
            need_positions,
        )
        return (
            grad_work.to(ctx.positions_dtype) if need_positions else None,
            grad_params if need_params else None,
            None,
            None,
            None,
            None,
        )


def hash_grid_encode_cuda(
    positions: Tensor,
    params: Tensor,
    level_scales: Tensor,
    level_info: Tensor,
    features_per_level: int,
    interpolation: str,
) -> Tensor:
    """Encodes positions with a multi-resolution hash grid.

    Args:
        positions: Tensor  # [M, 3] in [0, 1] (the caller clamps), on the parameters' device
        params: Tensor  # [P] float32 or float64, every level's table in tiny-cuda-nn's flat layout
        level_scales: Tensor  # [L] float64, each level's scale
        level_info: Tensor  # [L, 4] int64: resolution, table size (rows), offset (rows), hashed (0/1)
        features_per_level: int  # F
        interpolation: str  # one of INTERPOLATIONS
    Returns:
        features: Tensor  # [M, L * F] in the parameters' dtype
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return _HashGridCudaFunction.apply(
        positions,
        params,
        level_scales,
        level_info,
        int(features_per_level),
        INTERPOLATIONS.index(interpolation),
    )
