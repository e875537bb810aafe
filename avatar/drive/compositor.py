"""The compositor: the rendered head over the torso over the background."""

from __future__ import annotations

import cv2
import numpy as np

from avatar.data.head_window import HeadWindow


def torso_over_background(
    frame: np.ndarray,  # [S, S, 3] uint8: a captured frame
    masks: np.ndarray,  # [S, S, 4] uint8: person, head, torso, mouth (see avatar.data.dataset)
    background: np.ndarray,  # [S, S, 3] uint8
    *,
    feather_px: int = 2,
) -> np.ndarray:
    """-> [S, S, 3] float32 in [0, 1]: the frame's torso over the background; the frame's head is removed."""
    torso = masks[..., 2].astype(np.float32) / 255
    if feather_px:
        torso = cv2.GaussianBlur(torso, (0, 0), feather_px)
    weight = torso[..., None]
    return (frame.astype(np.float32) * weight + background.astype(np.float32) * (1 - weight)) / 255


def head_over(
    base: np.ndarray,  # [S, S, 3] float32 in [0, 1]
    head_rgb: np.ndarray,  # [R, R, 3] float32, premultiplied: the head rendered over black
    head_alpha: np.ndarray,  # [R, R, 1] float32
    window: HeadWindow,
) -> np.ndarray:
    """-> [S, S, 3] float32: the head window composited over `base` (resampled to the window's pixels)."""
    if head_rgb.shape[0] != window.side:
        size = (window.side, window.side)
        head_rgb = cv2.resize(head_rgb, size, interpolation=cv2.INTER_LINEAR)
        head_alpha = cv2.resize(head_alpha, size, interpolation=cv2.INTER_LINEAR)[..., None]
    out = base.copy()
    region = out[window.y0 : window.y0 + window.side, window.x0 : window.x0 + window.side]
    region[:] = head_rgb + (1 - head_alpha) * region
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
