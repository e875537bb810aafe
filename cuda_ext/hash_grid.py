"""The "cuda" hash-grid backend: avatar.encoding.hash_grid's encoding computed by this package's kernels.

Same layout, hashing, +0.5 offset, clamping and float32/float64 arithmetic as `hash_grid_encode` (the float32
grid coordinate is one fmaf, as tiny-cuda-nn's), first derivatives w.r.t. positions and parameters; the
parameter gradient is accumulated with atomicAdd, so its summation order (not its value) varies run to run.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from avatar.encoding.hash_grid import (
    INTERPOLATIONS,
    N_POS_DIMS,
    HashGridConfig,
    HashGridEncoding,
    flatten_level_tables,
    level_tables,
)
from cuda_ext.build import load_extension


@functools.cache
def _level_tensors(config: HashGridConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-level scales [L] float64 and (resolution, table_size, offset, hashed) [L, 4] int64 on `device`."""
    levels = config.levels()
    scales = torch.tensor([level.scale for level in levels], dtype=torch.float64, device=device)
    info = torch.tensor(
        [[level.resolution, level.table_size, level.offset, int(level.hashed)] for level in levels],
        dtype=torch.int64,
        device=device,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # cached for every later call, on whichever stream it runs
    return scales, info


class _HashGridCudaFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions: Tensor, params: Tensor, config: HashGridConfig) -> Tensor:
        work = positions.to(params.dtype).contiguous()
        scales, info = _level_tensors(config, params.device)
        ctx.config = config
        ctx.positions_dtype = positions.dtype
        ctx.save_for_backward(work, params)
        return load_extension().hash_grid_forward(
            work,
            params,
            scales,
            info,
            config.n_features_per_level,
            INTERPOLATIONS.index(config.interpolation),
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        work, params = ctx.saved_tensors
        config: HashGridConfig = ctx.config
        need_positions, need_params = ctx.needs_input_grad[:2]
        scales, info = _level_tensors(config, params.device)
        grad_params, grad_work = load_extension().hash_grid_backward(
            work,
            params,
            scales,
            info,
            config.n_features_per_level,
            INTERPOLATIONS.index(config.interpolation),
            grad_out.to(params.dtype).contiguous(),
            need_params,
            need_positions,
        )
        return (
            grad_work.to(ctx.positions_dtype) if need_positions else None,
            grad_params if need_params else None,
            None,
        )


def hash_grid_encode_cuda(positions: Tensor, params: Tensor | list[Tensor], config: HashGridConfig) -> Tensor:
    """`avatar.encoding.hash_grid.hash_grid_encode` on the GPU (same arguments, checks and result).

    Args:
        positions: Tensor  # [..., 3] in [0, 1] (clamped), on the parameters' CUDA device
        params: Tensor  # [P] in tiny-cuda-nn's flat layout (float32 or float64), or L tables [table_size_l, F]
    Returns:
        features: Tensor  # [..., L * F] in the parameters' dtype
    """
    if not isinstance(params, Tensor):
        params = flatten_level_tables(params, config)
    level_tables(params, config)  # validates the shape
    if params.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"params must be float32 or float64, got {params.dtype}")
    if positions.shape[-1] != N_POS_DIMS:
        raise ValueError(f"positions must have shape [..., 3], got {list(positions.shape)}")
    if not positions.is_floating_point():
        raise ValueError(f"positions must be floating point, got {positions.dtype}")
    if params.device.type != "cuda" or positions.device != params.device:
        raise ValueError(
            f"params and positions must be on one CUDA device, got {params.device}, {positions.device}"
        )
    batch_shape = positions.shape[:-1]
    flat = positions.reshape(-1, N_POS_DIMS).clamp(0.0, 1.0)
    features = _HashGridCudaFunction.apply(flat, params.contiguous(), config)
    return features.reshape(*batch_shape, config.n_output_dims)


class CudaHashGridEncoding(HashGridEncoding):
    """`HashGridEncoding` (same parameters, initialisation and state dict) evaluated by the CUDA kernels
    while its parameters are on a GPU, and by the PyTorch code when they are on the CPU."""

    def forward(self, positions: Tensor) -> Tensor:
        """positions [..., 3] in [0, 1] (clamped) -> features [..., L * F] in the parameters' dtype."""
        if self.params.device.type != "cuda":
            return super().forward(positions)
        return hash_grid_encode_cuda(positions, self.params, self.config)
