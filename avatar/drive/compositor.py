"""The compositor: the rendered head over the torso over the background, or over nothing (a transparent frame:
premultiplied RGBA, whose alpha is the head's and the torso's coverage). The torso is the capture frame's own
pixels pasted under the head, or the Gaussian torso rendered with the head, whose colour at the capture's camera
may be taken from the frame (`torso_coloured_by_frame`)."""

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
    weight = _feathered(masks, 2, feather_px)
    if background is None:
        return np.concatenate([frame.astype(np.float32) / 255 * weight, weight], axis=-1)
    return (frame.astype(np.float32) * weight + background.astype(np.float32) * (1 - weight)) / 255


def _feathered(masks: np.ndarray, channel: int, feather_px: int) -> np.ndarray:
    """[S, S, 4] uint8 masks -> [S, S, 1] float32: mask `channel` in [0, 1], its edge blurred by `feather_px`."""
    mask = masks[..., channel].astype(np.float32) / 255
    if feather_px:
        mask = cv2.GaussianBlur(mask, (0, 0), feather_px)
    return mask[..., None]


def torso_coloured_by_frame(
    rgb: np.ndarray,  # [S, S, 3] float32, premultiplied: the bust (head and torso in one pass) over black
    torso_rgb: np.ndarray,  # [S, S, 3] float32: the torso Gaussians' part of `rgb`
    torso_weight: np.ndarray,  # [S, S, 1] float32: the torso Gaussians' part of the bust's alpha
    under: np.ndarray,  # [S, S, 3] or premultiplied [S, S, 4] float32: the frame's torso over the background
    masks: np.ndarray,  # [S, S, 4] uint8: the frame's person, head, torso, mouth (see avatar.data.dataset)
    *,
    feather_px: int = 2,
) -> np.ndarray:
    """-> [S, S, 3] float32 `rgb` whose torso takes the colour of what lies `under` the bust at the capture's
    camera (`torso_over_background` of the same frame) wherever the frame does not show its head. Which of head
    and torso is seen at a pixel, and how much of it, is still the one-pass render's (its depth order): laid
    over `under`, the frame's torso shows through the torso's Gaussians and hides the head where they are in
    front of it. Where the frame shows its head (its chin lower than the rendered one), and where `under` is
    clear, the Gaussians keep their own colour."""
    outside_head = 1 - _feathered(masks, 1, feather_px)
    under_alpha = under[..., 3:] if under.shape[-1] == 4 else 1.0
    return rgb + outside_head * (torso_weight * under[..., :3] - under_alpha * torso_rgb)


def resampled(image: np.ndarray, side: int) -> np.ndarray:
    """[R, R, C] float32 -> [side, side, C], linearly interpolated."""
    if image.shape[0] == side:
        return image
    out = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    return out[..., None] if out.ndim == 2 else out


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
    head_rgb, head_alpha = resampled(head_rgb, window.side), resampled(head_alpha, window.side)
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
