"""CUDA kernels behind the PyTorch reference APIs: Gaussian projection, tile binning, rasterization, hash grid.

The kernels live in torch-free headers (csrc/*.cuh), instantiated by csrc/*.cu, bound to torch by
csrc/bindings.cpp, and built on first use by `cuda_ext.build` (or ahead of time: `python -m cuda_ext.build`).
The backends built on them are registered as rasterize(..., backend="cuda" | "gsplat" | "auto") and
make_hash_grid(..., backend="cuda"); importing this package compiles nothing.
"""

from __future__ import annotations
