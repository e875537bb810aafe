"""Server-side drawing: the avatar rasterized on the server from a page's camera, sent as an image.

For a browser that draws WebGL without a GPU, sorting and drawing the splats in the page is slower than drawing
them here (docs/viewer.md): the viewer can then rasterize each frame with `avatar.render` from the page's
camera, at most `MAX_SIDE` pixels across, composite it over the background and show it as the page's
background image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatar.core.pinhole import centered_intrinsics
from avatar.model.gaussians import GaussianSet
from avatar.render.rasterize import render_gaussians
from viewers.splat_buffer import SCENE_SCALE

MAX_SIDE = 256  # pixels across the larger side of a server-drawn image


@dataclass(frozen=True)
class PageCamera:
    """A page's camera as viser reports it."""

    wxyz: tuple[float, float, float, float]  # R_world_camera (OpenCV axes: x right, y down, z forward)
    position: tuple[float, float, float]  # scene units
    fov: float  # vertical field of view, radians
    width: int  # canvas pixels
    height: int


def viewmat(camera: PageCamera, *, scale: float = SCENE_SCALE) -> np.ndarray:
    """[4, 4] avatar frame (metres) -> the page camera's frame."""
    w, x, y, z = camera.wxyz
    rotation = Rotation.from_quat([x, y, z, w]).as_matrix()  # R_world_camera
    view = np.eye(4)
    view[:3, :3] = rotation.T
    view[:3, 3] = -rotation.T @ (np.asarray(camera.position, float) / scale)
    return view


def image_size(camera: PageCamera, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the drawn image: the canvas's aspect, at most `max_side` across."""
    width, height = max(camera.width, 1), max(camera.height, 1)
    shrink = min(1.0, max_side / max(width, height))
    return max(1, round(width * shrink)), max(1, round(height * shrink))


def draw(
    gaussians: GaussianSet, camera: PageCamera, background: np.ndarray, *, max_side: int = MAX_SIDE
) -> np.ndarray:
    """The avatar's `gaussians` (avatar frame) seen by `camera` over `background` ([H, W, 3] uint8, any size:
    stretched to the canvas) -> [h, w, 3] uint8 at `image_size`."""
    width, height = image_size(camera, max_side)
    side = max(width, height)  # the rasterizer draws squares: one covering the canvas, cut to it
    focal = height / 2 / math.tan(camera.fov / 2)
    K = torch.from_numpy(centered_intrinsics(focal, side)).float()
    view = torch.from_numpy(viewmat(camera)).float()
    with torch.no_grad():
        out = render_gaussians(gaussians, view.to(gaussians.means.device), K.to(gaussians.means.device), side)
    top, left = (side - height) // 2, (side - width) // 2
    rgb = out.rgb[top : top + height, left : left + width].cpu().numpy()
    alpha = out.alpha[top : top + height, left : left + width].cpu().numpy()
    behind = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return (np.clip(rgb + (1 - alpha) * behind, 0, 1) * 255).round().astype(np.uint8)
