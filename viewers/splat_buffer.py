"""Gaussians packed for viser's splat renderer, in a scene scaled so that float16 holds their covariances.

viser draws Gaussian splats in the browser from one uint32 buffer of 8 words per Gaussian (its
`GaussianSplatHandle` layout): the centre as 3 float32, a word the renderer keeps for itself, the 6
upper-triangular terms of the covariance as float16, and RGBA as 4 uint8. This avatar's Gaussians have standard
deviations of 0.1-20 mm: in metres their variances (1e-8 .. 4e-4) fall below float16's smallest normal number
(6.1e-5) and lose their precision or vanish. The viewer's scene is therefore in `SCENE_SCALE` units a metre
(centimetres): variances of 1e-4 .. 4, all normal float16 numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from avatar.model.gaussians import GaussianSet
from avatar.render import quat_scale_to_covar

SCENE_SCALE = 100.0  # viewer units a metre
WORDS_PER_GAUSSIAN = 8


def pack_splats(
    gaussians: GaussianSet, colors: Tensor | None = None, *, scale: float = SCENE_SCALE
) -> np.ndarray:
    """Gaussians (metres) -> [N, 8] uint32 viser splat buffer of the scene scaled by `scale`.

    Args:
        gaussians: GaussianSet  # N Gaussians, metres
        colors: Tensor | None  # [N, 3] in [0, 1] to draw instead of the Gaussians' own colours
    """
    with torch.no_grad():
        centers = (gaussians.means.double() * scale).float().cpu().numpy()
        exact = quat_scale_to_covar(
            gaussians.quats.double(), gaussians.scales.double()
        )  # only the packing rounds
        triu = exact.mul(scale**2).reshape(-1, 9)[:, [0, 1, 2, 4, 5, 8]]
        rgb = gaussians.colors if colors is None else colors
        rgba = torch.cat([rgb, gaussians.opacities[:, None]], dim=-1)
        rgba_bytes = (rgba.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    buffer = np.zeros((gaussians.num, WORDS_PER_GAUSSIAN), dtype=np.uint32)
    buffer[:, 0:3] = np.ascontiguousarray(centers).view(np.uint32)
    buffer[:, 4:7] = np.ascontiguousarray(triu.cpu().numpy().astype(np.float16)).view(np.uint32)
    buffer[:, 7:8] = np.ascontiguousarray(rgba_bytes).view(np.uint32)
    return buffer


def unpack_covariances(buffer: np.ndarray, *, scale: float = SCENE_SCALE) -> np.ndarray:
    """[N, 8] uint32 splat buffer -> [N, 3, 3] float64 covariances as the browser reads them, in metres^2."""
    triu = np.ascontiguousarray(buffer[:, 4:7]).view(np.float16).astype(np.float64)
    a, b, c, d, e, f = triu.T
    full = np.stack([a, b, c, b, d, e, c, e, f], axis=-1).reshape(-1, 3, 3)
    return full / scale**2


def unpack_centers(buffer: np.ndarray, *, scale: float = SCENE_SCALE) -> np.ndarray:
    """[N, 8] uint32 splat buffer -> [N, 3] float64 centres in metres."""
    return np.ascontiguousarray(buffer[:, 0:3]).view(np.float32).astype(np.float64) / scale


def unpack_rgba(buffer: np.ndarray) -> np.ndarray:
    """[N, 8] uint32 splat buffer -> [N, 4] uint8 RGBA."""
    return np.ascontiguousarray(buffer[:, 7:8]).view(np.uint8).reshape(-1, 4)
