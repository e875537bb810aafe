"""The pinhole camera shared by capture, the model and rendering (OpenCV axes: x right, y down, z forward)."""

from __future__ import annotations

import math

import numpy as np


def centered_intrinsics(focal_px: float, size: int) -> np.ndarray:
    """[3, 3] pinhole matrix with square pixels and the principal point at the centre of a size x size image."""
    c = size / 2
    return np.array([[focal_px, 0.0, c], [0.0, focal_px, c], [0.0, 0.0, 1.0]])


def resampled_intrinsics(K: np.ndarray, size: int, out_px: int) -> np.ndarray:
    """[..., 3, 3] cameras of a size x size image -> the same cameras for the image resampled to out_px x out_px."""
    scaled = np.array(K, dtype=np.float64)
    scaled[..., :2, :] *= out_px / size
    return scaled


def focal_from_fov(fov_degrees: float, size: int) -> float:
    """The focal length in pixels that gives a field of view of `fov_degrees` across `size` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_degrees) / 2)


def project(points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray) -> np.ndarray:
    """points [..., P, 3] (object frame), R [..., 3, 3], t [..., 3] (object -> camera), K [3, 3] -> pixels
    [..., P, 2]."""
    cam = np.einsum("...ij,...pj->...pi", R, points) + t[..., None, :]
    uvw = cam @ K.T
    return uvw[..., :2] / uvw[..., 2:3]
