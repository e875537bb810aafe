"""The compositor: the rendered head over the torso over the background, or over nothing (a transparent frame:
premultiplied RGBA, whose alpha is the head's and the torso's coverage)."""

from __future__ import annotations

import cv2
import numpy as np

from avatar.data.head_window import HeadWindow


def torso_over_background(
    frame: np.ndarray,  # [S, S, 3] uint8: a captured frame
    masks: np.ndarray,  # [S, S, 4] uint8: person, head, torso, mouth (see avatar.data.dataset)
    background: np.ndarray | None,  # [S, S, 3] uint8; None: transparent
    *,
    feather_px: int = 2,
) -> np.ndarray:
    """-> [S, S, 3] float32 in [0, 1]: the frame's torso over the background, the frame's head removed; with no
    background [S, S, 4]: the torso alone, premultiplied RGBA."""
    torso = masks[..., 2].astype(np.float32) / 255
    if feather_px:
        torso = cv2.GaussianBlur(torso, (0, 0), feather_px)
    weight = torso[..., None]
    if background is None:
        return np.concatenate([frame.astype(np.float32) / 255 * weight, weight], axis=-1)
    return (frame.astype(np.float32) * weight + background.astype(np.float32) * (1 - weight)) / 255


def empty_base(background: np.ndarray | None, size: int) -> np.ndarray:
    """-> what a head is composited over when no torso is pasted: `background` [S, S, 3] uint8 as [S, S, 3]
    float32 in [0, 1], or with no background a transparent [S, S, 4] premultiplied RGBA."""
    if background is None:
        return np.zeros((size, size, 4), np.float32)
    return background.astype(np.float32) / 255


def head_over(
    base: np.ndarray,  # [S, S, 3] float32 in [0, 1]
    head_rgb: np.ndarray,  # [R, R, 3] float32, premultiplied: the head rendered over black
    head_alpha: np.ndarray,  # [R, R, 1] float32
    window: HeadWindow,
) -> np.ndarray:
    """-> `base` with the head window composited over it (resampled to the window's pixels); a [S, S, 4]
    premultiplied RGBA base gets the head's alpha too."""
    if head_rgb.shape[0] != window.side:
        size = (window.side, window.side)
        head_rgb = cv2.resize(head_rgb, size, interpolation=cv2.INTER_LINEAR)
        head_alpha = cv2.resize(head_alpha, size, interpolation=cv2.INTER_LINEAR)[..., None]
    head = head_rgb if base.shape[-1] == 3 else np.concatenate([head_rgb, head_alpha], axis=-1)
    out = base.copy()
    region = out[window.y0 : window.y0 + window.side, window.x0 : window.x0 + window.side]
    region[:] = head + (1 - head_alpha) * region
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[..., C] float in [0, 1] -> uint8; a premultiplied RGBA image ([..., 4]) becomes straight RGBA, as video
    and PNG files store it."""
    if image.shape[-1] == 4:
        alpha = image[..., 3:]
        rgb = np.where(alpha > 1e-6, image[..., :3] / np.maximum(alpha, 1e-6), 0.0)
        image = np.concatenate([rgb, alpha], axis=-1)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
