"""`make_hash_grid`: the hash-grid module of the backend asked for (PyTorch, our CUDA kernels, tiny-cuda-nn)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from avatar.core.backends import HashGridName, resolve_hash_grid
from avatar.model.encoding.hash_grid import N_POS_DIMS, TCNN_DEFAULT_SEED, HashGridConfig, HashGridEncoding
from avatar.model.encoding.hash_grid_cuda import CudaHashGridEncoding


def make_hash_grid(
    config: HashGridConfig | None = None,
    backend: HashGridName = "auto",
    *,
    seed: int = TCNN_DEFAULT_SEED,
    device: torch.device | str | None = None,
    tcnn_dtype: torch.dtype | None = torch.float32,
) -> nn.Module:
    """A hash-grid module: positions [..., 3] in [0, 1] (clamped) -> features [..., L * F] float32.

    backend: "torch" is `HashGridEncoding`; "tcnn" is `tinycudann.Encoding` (CUDA only) with the same
        clamping, float32 output and `{"params": [P]}` state dict; "cuda" is `cuda_ext.hash_grid`'s
        `CudaHashGridEncoding` (this project's kernels, built on first use; CUDA only; the torch results to
        float rounding); "auto" is "tcnn" when tinycudann imports, CUDA is available and `device` is not a
        CPU, else "cuda" when the project's kernels build there, else "torch".
    tcnn_dtype: the precision tiny-cuda-nn computes in; None lets it choose (float16 on most GPUs).
    """
    config = config if config is not None else HashGridConfig()
    backend = resolve_hash_grid(backend, device).name
    if backend == "torch":
        return HashGridEncoding(config, seed=seed, device=device)
    if backend == "cuda":
        return CudaHashGridEncoding(config, seed=seed, device=device)
    import tinycudann

    module = _tcnn_hash_grid_class(tinycudann.Encoding)(config, seed=seed, dtype=tcnn_dtype)
    return module.to(device) if device is not None else module


@functools.cache
def _tcnn_hash_grid_class(encoding_class: type) -> type:
    """A subclass of `tinycudann.Encoding` with `HashGridEncoding`'s interface (`config`, clamping, float32)."""

    class TcnnHashGridEncoding(encoding_class):
        def __init__(self, config: HashGridConfig, *, seed: int, dtype: torch.dtype | None):
            super().__init__(N_POS_DIMS, config.to_tcnn(), seed=seed, dtype=dtype)
            self.config = config

        def forward(self, positions: Tensor) -> Tensor:
            flat = positions.reshape(-1, N_POS_DIMS).clamp(0.0, 1.0)
            features = super().forward(flat).to(torch.float32)
            return features.reshape(*positions.shape[:-1], self.config.n_output_dims)

    return TcnnHashGridEncoding
