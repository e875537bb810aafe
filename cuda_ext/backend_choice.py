"""Which rasterizer backend "auto" uses for given inputs: cuda, else gsplat, else torch."""

from __future__ import annotations

from torch import Tensor

from avatar.errors import AvatarError
from cuda_ext import gsplat_backend
from cuda_ext import rasterize as cuda_rasterize


def auto_rasterizer_backend(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    background: Tensor | None = None,
) -> str:
    """ "cuda" when this package's kernels can render the inputs (building them on first use), else "gsplat"
    when gsplat can, else "torch" (CPU tensors, float64, a gradient w.r.t. K, no GPU or toolkit, ...)."""
    inputs = (means, quats, scales, opacities, colors, viewmat, K, background)
    if cuda_rasterize.unsupported_reason(*inputs) is None:
        try:
            cuda_rasterize.feature_padding(colors.shape[1] + 1)  # builds the kernels; raises past the max
            return "cuda"
        except AvatarError:  # the build failed (remembered for the process) or too many channels
            pass
    if gsplat_backend.unsupported_reason(*inputs) is None:
        return "gsplat"
    return "torch"
