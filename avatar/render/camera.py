"""Pinhole camera helpers: intrinsics and world-to-camera matrices (OpenCV: x right, y down, z forward)."""

from __future__ import annotations

import torch
from torch import Tensor

from avatar.core.pinhole import focal_from_fov

__all__ = ["focal_from_fov", "intrinsics", "look_at"]


def intrinsics(
    focal: float,
    cx: float,
    cy: float,
    *,
    focal_y: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The intrinsic matrix K [3, 3] of a pinhole camera; `focal_y` defaults to `focal` (square pixels).

    Pixel (col, row) covers [col, col + 1) x [row, row + 1): the image centre is (width / 2, height / 2).
    """
    fy = focal if focal_y is None else focal_y
    return torch.tensor([[focal, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """The world-to-camera matrix [4, 4] of a camera at `eye` [3] looking at `target` [3].

    `up` [3] is the world direction that appears upwards in the image (the camera's -y axis).
    """
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    viewmat = torch.eye(4, dtype=eye.dtype, device=eye.device)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye
    return viewmat
