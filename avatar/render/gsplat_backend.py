"""The "gsplat" rasterizer backend: gsplat's CUDA pipeline behind avatar.render.rasterize's conventions.

It runs the stages that `gsplat.rasterization` chains in its classic, unpacked mode (fully_fused_projection
with opacity-aware bounds, isect_tiles, isect_offset_encode, rasterize_to_pixels) itself, so that the
`means2d` it returns is the tensor the image was computed from and its `.grad` is the screen-space gradient.

Differences from the torch and cuda backends, all gsplat's own:
- alpha is capped at 0.999 instead of 0.99, and compositing stops when T <= 1e-4 instead of T < 1e-4, so
  pixels behind nearly opaque Gaussians differ; parity needs a tolerance (or opacities below 0.99);
- the tile extents are per-axis, opacity-aware boxes (ceil(min(3.33, sqrt(2 ln(opacity * 255))) sigma_axis))
  instead of the 3-sigma square trimmed to the alpha ellipse, so a Gaussian can reach pixels a little beyond
  the torch backend's square, and `radii` (here the larger of gsplat's two per-axis radii) differ;
- Gaussians with opacity < 1/255 get radius 0 (the torch backend keeps their radius but draws them nowhere);
- gsplat's kernels use fast-math exponentials (a few ulp).
"""

from __future__ import annotations

import math

import torch

from avatar.core.backends import gsplat_unavailable_reason
from avatar.core.errors import AvatarError
from avatar.render.interface import RasterizeInputs, RenderOutput
from avatar.render.tiles import TILE_SIZE
from cuda_ext.rasterize import inputs_unsupported_reason


def rasterize_gsplat(inputs: RasterizeInputs) -> RenderOutput:
    """The "gsplat" backend of avatar.render.rasterize (same conventions; see the module notes).

    Differentiable w.r.t. means, quats, scales, opacities, colors, background and viewmat.
    """
    reason = inputs_unsupported_reason(*inputs.tensors) or gsplat_unavailable_reason()
    if reason is not None:
        raise AvatarError(
            f"the gsplat rasterizer cannot render this: {reason}",
            fix="Install gsplat on a machine with CUDA (pip install gsplat), or use backend='torch'",
        )
    means, quats, scales, opacities, colors, viewmat, K, width, height, background, near, far, eps2d = (
        inputs.arguments
    )
    from gsplat import fully_fused_projection, isect_offset_encode, isect_tiles, rasterize_to_pixels

    radii, projected_means, depths, conics, _ = fully_fused_projection(
        means,
        None,
        quats,
        scales,
        viewmat[None],
        K[None],
        width,
        height,
        eps2d=eps2d,
        near_plane=near,
        far_plane=far,
        packed=False,
        opacities=opacities,
    )
    means2d = projected_means[0]  # [N, 2], the tensor the image is computed from
    features = torch.cat([colors, depths[0][:, None]], dim=1)
    tiles_x, tiles_y = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    _, isect_ids, flatten_ids = isect_tiles(means2d[None], radii, depths, TILE_SIZE, tiles_x, tiles_y)
    offsets = isect_offset_encode(isect_ids, 1, tiles_x, tiles_y)
    channel_background = None
    if background is not None and background.dim() == 1:
        channel_background = torch.cat([background, background.new_zeros(1)])[None]
    image, alpha = rasterize_to_pixels(
        means2d[None],
        conics,
        features[None],
        opacities[None],
        width,
        height,
        TILE_SIZE,
        offsets,
        flatten_ids,
        backgrounds=channel_background,
    )
    image, alpha = image[0], alpha[0]
    rgb, depth = image[..., :-1], image[..., -1:]
    if background is not None and background.dim() == 3:
        rgb = rgb + (1.0 - alpha) * background
    return RenderOutput(
        rgb=rgb, alpha=alpha, depth=depth, radii=radii[0].amax(dim=-1).to(torch.int32), means2d=means2d
    )
