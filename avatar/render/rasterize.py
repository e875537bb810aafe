"""The public rasterizer: 3D Gaussians + one pinhole camera -> image, alpha, depth; backends behind it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from avatar.core.backends import RasterizerName, rasterizer_for_inputs
from avatar.core.errors import AvatarError
from avatar.model.gaussians import GaussianSet
from avatar.render.gsplat_backend import rasterize_gsplat
from avatar.render.interface import RasterizeInputs, RenderOutput
from avatar.render.projection import project_gaussians
from avatar.render.rasterize_torch import ALPHA_MIN, rasterize_to_pixels_torch
from avatar.render.tiles import TILE_SIZE, alpha_half_extents, bin_gaussians
from cuda_ext.errors import CudaExtError
from cuda_ext.rasterize import rasterize_cuda

EPS2D = 0.3  # px^2 added to every projected covariance: the low-pass of 3DGS and gsplat


def _rasterize_torch(inputs: RasterizeInputs) -> RenderOutput:
    means, quats, scales, opacities, colors, viewmat, K, width, height, background, near, far, eps2d = (
        inputs.arguments
    )
    projection = project_gaussians(
        means,
        quats,
        scales,
        viewmat,
        K,
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=eps2d,
    )
    radii = projection.radii
    bins = bin_gaussians(
        projection.means2d,
        radii * (opacities >= ALPHA_MIN),
        projection.depths,
        width,
        height,
        tile_size=TILE_SIZE,
        half_extents=alpha_half_extents(projection.cov2d.detach(), opacities.detach(), ALPHA_MIN),
    )
    features = torch.cat([colors, projection.depths[:, None]], dim=1)
    accumulated, alpha = rasterize_to_pixels_torch(
        projection.means2d, projection.conics, opacities, features, bins, width, height
    )
    rgb, depth = accumulated[..., :-1], accumulated[..., -1:]
    if background is not None:
        rgb = rgb + (1.0 - alpha) * background
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, radii=radii, means2d=projection.means2d)


def _rasterize_cuda(inputs: RasterizeInputs) -> RenderOutput:
    try:
        return RenderOutput(*rasterize_cuda(*inputs.arguments))  # builds the kernels on first use
    except CudaExtError as error:
        raise AvatarError(str(error)) from error


def _rasterize_auto(inputs: RasterizeInputs) -> RenderOutput:
    return _BACKENDS[rasterizer_for_inputs(inputs.tensors, inputs.colors.shape[1])](inputs)


# name -> fn(RasterizeInputs) -> RenderOutput, with the conventions of `rasterize`. A backend that needs something
# missing on this machine (a GPU, a compiled extension, gsplat) raises AvatarError when called; "auto" picks
# cuda, else gsplat, else torch for the inputs at hand (avatar.core.backends).
_BACKENDS: dict[str, Callable[[RasterizeInputs], RenderOutput]] = {
    "torch": _rasterize_torch,
    "cuda": _rasterize_cuda,
    "gsplat": rasterize_gsplat,
    "auto": _rasterize_auto,
}


def rasterize(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] standard deviations (not log)
    opacities: Tensor,  # [N] in [0, 1] (after the sigmoid)
    colors: Tensor,  # [N, C] any number of channels
    viewmat: Tensor,  # [4, 4] world -> camera, OpenCV axes (x right, y down, z forward)
    K: Tensor,  # [3, 3] intrinsics
    width: int,
    height: int,
    *,
    background: Tensor | None = None,  # [C] or [H, W, C]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = EPS2D,
    backend: RasterizerName = "torch",
) -> RenderOutput:
    """Render 3D Gaussians into one pinhole camera.

    Differentiable w.r.t. means, quats, scales, opacities, colors and background. Pixel (col, row) has its
    centre at (col + 0.5, row + 0.5) in the coordinates of K. Projection and binning follow gsplat
    (avatar.render.projection, avatar.render.tiles), compositing the original 3DGS kernel
    (avatar.render.rasterize_torch). Gaussians with opacity < 1/255 are drawn nowhere but keep their radius.

    backend: "torch" (any device and dtype), "cuda" (cuda_ext's kernels: float32 on a GPU, not differentiable
    w.r.t. K), "gsplat" (gsplat's kernels; alpha capped at 0.999, see avatar.render.gsplat_backend) or "auto"
    (cuda, else gsplat, else torch: the first that can render the inputs).
    """
    inputs = RasterizeInputs(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat,
        K,
        width,
        height,
        background,
        near_plane,
        far_plane,
        eps2d,
    )
    inputs.check_shapes()
    if backend not in _BACKENDS:
        raise AvatarError(
            f"unknown or unavailable rasterizer backend {backend!r}",
            fix=f"use one of: {', '.join(sorted(_BACKENDS))}",
        )
    return _BACKENDS[backend](inputs)


def render_gaussians(
    gaussians: GaussianSet,
    viewmat: Tensor,  # [4, 4] head -> camera
    K: Tensor,  # [3, 3]
    resolution: int,
    background: Tensor | None = None,  # [R, R, 3] or [3]
    *,
    colors: Tensor | None = None,  # [N, C] splatted instead of the Gaussians' colours
    backend: RasterizerName = "torch",
) -> RenderOutput:
    """A GaussianSet rendered into a square image of `resolution` pixels."""
    return rasterize(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        gaussians.colors if colors is None else colors,
        viewmat,
        K,
        resolution,
        resolution,
        background=background,
        backend=backend,
    )
