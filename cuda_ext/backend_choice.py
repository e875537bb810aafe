"""Which rasterizer backend "auto" uses for given inputs: cuda, else gsplat, else torch."""

from __future__ import annotations

import torch
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


def auto_rasterizer_for(device: torch.device) -> tuple[str, str | None]:
    """(the backend "auto" picks for float32 inputs on `device`, why our kernels are not it; None when they are)."""
    if device.type != "cuda":
        return "torch", f"the inputs are on the {device.type}"
    from cuda_ext.build import CudaExtensionUnavailable, load_extension

    try:
        load_extension()
        return "cuda", None
    except CudaExtensionUnavailable as error:
        reason = str(error)
    return ("gsplat" if gsplat_backend.gsplat_import_error() is None else "torch"), reason
