"""Per-frame face signals measured on landmarks: eye and mouth openness."""

from __future__ import annotations

import numpy as np

from avatar.face.landmarks import EYES, LIP_INNER_BOTTOM, LIP_INNER_TOP, MOUTH_CORNER_A, MOUTH_CORNER_B


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] lid distance over eye width, averaged over both eyes."""
    points = landmarks[..., :2]
    ratios = [
        np.linalg.norm(points[..., upper, :] - points[..., lower, :], axis=-1)
        / (np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1) + 1e-6)
        for upper, lower, a, b in EYES
    ]
    return (ratios[0] + ratios[1]) / 2


def mouth_openness(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] inner-lip distance over mouth width (0 when closed, about 0.5 to 1 wide open)."""
    points = landmarks[..., :2]
    gap = np.linalg.norm(points[..., LIP_INNER_TOP, :] - points[..., LIP_INNER_BOTTOM, :], axis=-1)
    width = np.linalg.norm(points[..., MOUTH_CORNER_A, :] - points[..., MOUTH_CORNER_B, :], axis=-1)
    return gap / (width + 1e-6)
