"""The "cuda" rasterizer backend: this package's kernels behind autograd Functions.

The stages mirror avatar.render step for step, so that a parity run can compare them one at a time:
`project_gaussians_cuda` (avatar.render.projection.project_gaussians), `intersect_tiles_cuda`
(avatar.render.tiles.bin_gaussians with alpha_half_extents), `rasterize_to_pixels_cuda`
(avatar.render.rasterize_torch.rasterize_to_pixels_torch, plus an optional per-channel background), and
`rasterize_cuda`, which chains them with the conventions of avatar.render.rasterize.rasterize and returns the
same outputs (`CudaRender`). Everything is float32 on one CUDA device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from cuda_ext.build import load_extension, unavailable_reason
from cuda_ext.errors import CudaExtError

TILE_SIZE = 16  # pixels per tile side, as csrc/common.cuh compiles it

_FALLBACK = "Use backend='torch' (or 'auto', which picks what this machine supports)"


class CudaRender(NamedTuple):
    """One rendered view; `means2d` is the projected-means tensor the image was computed from."""

    rgb: Tensor  # [H, W, C] composited over the background when one is given
    alpha: Tensor  # [H, W, 1]
    depth: Tensor  # [H, W, 1]
    radii: Tensor  # [N] int32
    means2d: Tensor  # [N, 2]


class _ProjectGaussians(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmat, K, width, height, near_plane, far_plane, eps2d):
        ext = load_extension()
        means2d, conics, depths, radii, cov2d = ext.project_forward(
            means, quats, scales, viewmat, K, width, height, near_plane, far_plane, eps2d
        )
        ctx.save_for_backward(means, quats, scales, viewmat, K, radii)
        ctx.camera = (width, height, eps2d)
        ctx.mark_non_differentiable(radii, cov2d)
        return means2d, conics, depths, radii, cov2d

    @staticmethod
    @once_differentiable
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii, _v_cov2d):
        means, quats, scales, viewmat, K, radii = ctx.saved_tensors
        width, height, eps2d = ctx.camera
        need_viewmat = ctx.needs_input_grad[3]
        v_means, v_quats, v_scales, v_viewmat_rows = load_extension().project_backward(
            means,
            quats,
            scales,
            viewmat,
            K,
            width,
            height,
            eps2d,
            radii,
            v_means2d.contiguous(),
            v_conics.contiguous(),
            v_depths.contiguous(),
            need_viewmat,
        )
        v_viewmat = None
        if need_viewmat:
            v_viewmat = torch.zeros_like(viewmat)
            v_viewmat[:3] = v_viewmat_rows.sum(0).view(3, 4)
        return v_means, v_quats, v_scales, v_viewmat, None, None, None, None, None, None


def project_gaussians_cuda(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3]
    viewmat: Tensor,  # [4, 4] world -> camera (OpenCV axes)
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """EWA projection with project_gaussians' conventions: (means2d [N, 2], conics [N, 3], depths [N],
    radii [N] int32, cov2d [N, 3] as (a, b, c) of [[a, b], [b, c]]). Differentiable w.r.t. means, quats,
    scales and viewmat (not K) through means2d, conics and depths; culled entries hold zeros."""
    return _ProjectGaussians.apply(
        means.contiguous(),
        quats.contiguous(),
        scales.contiguous(),
        viewmat.contiguous(),
        K.contiguous(),
        int(width),
        int(height),
        float(near_plane),
        float(far_plane),
        float(eps2d),
    )


@dataclass(frozen=True)
class CudaTileBins:
    """The (tile, Gaussian) overlaps of one view, sorted by tile then depth (see avatar.render.tiles.TileBins)."""

    sorted_keys: Tensor  # [M] int64: tile << 32 | depth as an order-preserving uint32
    gaussian_ids: Tensor  # [M] int32
    offsets: Tensor  # [tiles_y * tiles_x + 1] int32: tile t's entries are offsets[t] : offsets[t + 1]
    tiles_per_gaussian: Tensor  # [N] int32
    tiles_x: int
    tiles_y: int

    @property
    def tile_ids(self) -> Tensor:
        """Tile of each entry [M] int64, non-decreasing."""
        return self.sorted_keys >> 32


@torch.no_grad()
def intersect_tiles_cuda(
    means2d: Tensor,  # [N, 2]
    radii: Tensor,  # [N] int32
    depths: Tensor,  # [N]
    cov2d: Tensor,  # [N, 3] (a, b, c)
    opacities: Tensor,  # [N]
    width: int,
    height: int,
) -> CudaTileBins:
    """bin_gaussians(means2d, radii * (opacities >= ALPHA_MIN), depths, half_extents=alpha_half_extents(...))."""
    keys, gaussian_ids, offsets, tiles_per_gaussian = load_extension().intersect_tiles(
        means2d.contiguous(),
        radii.contiguous(),
        depths.contiguous(),
        cov2d.contiguous(),
        opacities.contiguous(),
        int(width),
        int(height),
    )
    return CudaTileBins(
        sorted_keys=keys,
        gaussian_ids=gaussian_ids,
        offsets=offsets,
        tiles_per_gaussian=tiles_per_gaussian,
        tiles_x=-(-int(width) // TILE_SIZE),
        tiles_y=-(-int(height) // TILE_SIZE),
    )


class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, features, background, gaussian_ids, offsets, width, height):
        out_features, out_alphas, last_entries = load_extension().rasterize_forward(
            means2d, conics, opacities, features, background, offsets, gaussian_ids, width, height
        )
        alpha = out_alphas.unsqueeze(-1)
        ctx.save_for_backward(
            means2d, conics, opacities, features, background, gaussian_ids, offsets, alpha, last_entries
        )
        ctx.size = (width, height)
        return out_features, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, v_out_features, v_alpha):
        means2d, conics, opacities, features, background, gaussian_ids, offsets, alpha, last_entries = (
            ctx.saved_tensors
        )
        width, height = ctx.size
        v_out_features = v_out_features.contiguous()
        v_means2d, v_conics, v_opacities, v_features = load_extension().rasterize_backward(
            means2d,
            conics,
            opacities,
            features,
            background,
            offsets,
            gaussian_ids,
            alpha.squeeze(-1),
            last_entries,
            v_out_features,
            v_alpha.squeeze(-1).contiguous(),
            width,
            height,
        )
        v_background = None
        if background is not None and ctx.needs_input_grad[4]:
            v_background = (v_out_features * (1.0 - alpha)).sum(dim=(0, 1))
        return v_means2d, v_conics, v_opacities, v_features, v_background, None, None, None, None


def feature_padding(num_features: int) -> int:
    """Zero features to append so that a compiled kernel exists for the count."""
    counts = load_extension().rasterize_feature_counts()
    fitting = [count for count in counts if count >= num_features]
    if not fitting:
        raise CudaExtError(
            f"the cuda rasterizer composites at most {counts[-1]} features per Gaussian, got {num_features}",
            fix=_FALLBACK,
        )
    return fitting[0] - num_features


def rasterize_to_pixels_cuda(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    features: Tensor,  # [N, F]
    bins: CudaTileBins,
    width: int,
    height: int,
    *,
    background: Tensor | None = None,  # [F], added as final transmittance * background
) -> tuple[Tensor, Tensor]:
    """Composite binned Gaussians front to back: (sum of weight * feature [H, W, F] (+ T * background),
    alpha [H, W, 1]), as rasterize_to_pixels_torch. Differentiable w.r.t. means2d, conics, opacities,
    features and background."""
    num_features = features.shape[1]
    padding = feature_padding(num_features)
    if padding:
        features = torch.cat([features, features.new_zeros(features.shape[0], padding)], dim=1)
        if background is not None:
            background = torch.cat([background, background.new_zeros(padding)])
    image, alpha = _RasterizeToPixels.apply(
        means2d.contiguous(),
        conics.contiguous(),
        opacities.contiguous(),
        features.contiguous(),
        None if background is None else background.contiguous(),
        bins.gaussian_ids,
        bins.offsets,
        int(width),
        int(height),
    )
    return image[..., :num_features], alpha


def inputs_unsupported_reason(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    background: Tensor | None = None,
) -> str | None:
    """Why CUDA rasterizer kernels (ours, and gsplat's as this project calls them) cannot take these inputs:
    they must be float32 tensors on one CUDA device, with no gradient asked w.r.t. K. None when they can."""
    tensors = [means, quats, scales, opacities, colors, viewmat, K] + (
        [] if background is None else [background]
    )
    if means.device.type != "cuda":
        return f"the inputs are on {means.device}, not on a CUDA device"
    if any(tensor.device != means.device for tensor in tensors):
        return "the inputs are not all on one device"
    if any(tensor.dtype != torch.float32 for tensor in tensors):
        return "the CUDA rasterizers render float32 inputs only"
    if K.requires_grad:
        return "the CUDA rasterizers do not differentiate w.r.t. the intrinsics K"
    return None


def unsupported_reason(*inputs: Tensor | None) -> str | None:
    """Why `rasterize_cuda` cannot render these inputs (as inputs_unsupported_reason, checked without
    compiling, then whether the extension can be used here), or None."""
    return inputs_unsupported_reason(*inputs) or unavailable_reason()


def rasterize_cuda(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor | None,
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> CudaRender:
    """avatar.render.rasterize's conventions on this package's kernels (same arguments; see CudaRender).

    Differentiable w.r.t. means, quats, scales, opacities, colors, background and viewmat. Raises
    CudaExtError when the inputs are not float32 CUDA tensors on one device, when K requires a gradient, or
    (CudaExtensionUnavailable) when the kernels cannot be built here.
    """
    reason = unsupported_reason(means, quats, scales, opacities, colors, viewmat, K, background)
    if reason is not None:
        raise CudaExtError(f"the cuda rasterizer cannot render this: {reason}", fix=_FALLBACK)
    load_extension()
    means2d, conics, depths, radii, cov2d = project_gaussians_cuda(
        means,
        quats,
        scales,
        viewmat,
        K,
        width,
        height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
    )
    bins = intersect_tiles_cuda(means2d, radii, depths, cov2d, opacities, width, height)
    features = torch.cat([colors, depths[:, None]], dim=1)
    channel_background = None
    if background is not None and background.dim() == 1:
        channel_background = torch.cat([background, background.new_zeros(1)])  # the depth channel gets none
    image, alpha = rasterize_to_pixels_cuda(
        means2d, conics, opacities, features, bins, width, height, background=channel_background
    )
    rgb, depth = image[..., :-1], image[..., -1:]
    if background is not None and background.dim() == 3:
        rgb = rgb + (1.0 - alpha) * background
    return CudaRender(rgb=rgb, alpha=alpha, depth=depth, radii=radii, means2d=means2d)
