"""The "cuda" hash-grid backend: `HashGridEncoding` evaluated by cuda_ext's kernels on a GPU."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from avatar.model.encoding.hash_grid import (
    N_POS_DIMS,
    HashGridConfig,
    HashGridEncoding,
    checked_inputs,
)
from cuda_ext.hash_grid import hash_grid_encode_cuda as _encode


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


def hash_grid_encode_cuda(positions: Tensor, params: Tensor | list[Tensor], config: HashGridConfig) -> Tensor:
    """`avatar.model.encoding.hash_grid.hash_grid_encode` on the GPU (same arguments, checks and result).

    Args:
        positions: Tensor  # [..., 3] in [0, 1] (clamped), on the parameters' CUDA device
        params: Tensor  # [P] in tiny-cuda-nn's flat layout (float32 or float64), or L tables [table_size_l, F]
    Returns:
        features: Tensor  # [..., L * F] in the parameters' dtype
    """
    params = checked_inputs(positions, params, config)
    if params.device.type != "cuda" or positions.device != params.device:
        raise ValueError(
            f"params and positions must be on one CUDA device, got {params.device}, {positions.device}"
        )
    batch_shape = positions.shape[:-1]
    flat = positions.reshape(-1, N_POS_DIMS).clamp(0.0, 1.0)
    features = encode_clamped(flat, params.contiguous(), config)
    return features.reshape(*batch_shape, config.n_output_dims)


def encode_clamped(positions: Tensor, params: Tensor, config: HashGridConfig) -> Tensor:
    """positions [M, 3] already in [0, 1], params [P] contiguous -> [M, L * F], without the checks."""
    scales, info = _level_tensors(config, params.device)
    return _encode(positions, params, scales, info, config.n_features_per_level, config.interpolation)


class CudaHashGridEncoding(HashGridEncoding):
    """`HashGridEncoding` (same parameters, initialisation and state dict) evaluated by the CUDA kernels
    while its parameters are on a GPU, and by the PyTorch code when they are on the CPU."""

    def forward(self, positions: Tensor) -> Tensor:
        """positions [..., 3] in [0, 1] (clamped) -> features [..., L * F] in the parameters' dtype."""
        if self.params.device.type != "cuda":
            return super().forward(positions)
        return hash_grid_encode_cuda(positions, self.params, self.config)
