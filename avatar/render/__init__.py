"""3D Gaussian splatting rasterization: projection, tile binning, compositing, and the public `rasterize`."""

from __future__ import annotations

from avatar.render.camera import focal_from_fov, intrinsics, look_at
from avatar.render.projection import Projection, project_gaussians, quat_scale_to_covar, quat_to_rotmat
from avatar.render.rasterize import EPS2D, RenderOutput, rasterize
from avatar.render.rasterize_torch import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN, rasterize_to_pixels_torch
from avatar.render.tiles import TILE_SIZE, TileBins, alpha_half_extents, bin_gaussians

__all__ = [
    "EPS2D",
    "ALPHA_MAX",
    "ALPHA_MIN",
    "TILE_SIZE",
    "TRANSMITTANCE_MIN",
    "Projection",
    "RenderOutput",
    "TileBins",
    "alpha_half_extents",
    "bin_gaussians",
    "focal_from_fov",
    "intrinsics",
    "look_at",
    "project_gaussians",
    "quat_scale_to_covar",
    "quat_to_rotmat",
    "rasterize",
    "rasterize_to_pixels_torch",
]
