"""The background plate: the mean of the pixels the person never covers, the rest filled in."""

from __future__ import annotations

import cv2
import numpy as np


class BackgroundAccumulator:
    """Running mean over frames of the pixels away from the person (the person's matte grown by a margin)."""

    def __init__(self, size: int, margin_px: int | None = None):
        self.margin_px = margin_px if margin_px is not None else max(3, size // 40)
        self.total = np.zeros((size, size, 3), dtype=np.float64)
        self.count = np.zeros((size, size), dtype=np.float64)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.margin_px + 1,) * 2)

    def add(self, frame: np.ndarray, person: np.ndarray, extra_cover: np.ndarray | None = None) -> None:
        """frame [S, S, 3] uint8, person [S, S] uint8 soft matte, extra_cover [S, S] uint8 (e.g. a face hull)."""
        covered = np.where(person >= 26, 255, 0).astype(np.uint8)
        if extra_cover is not None:
            covered = cv2.bitwise_or(covered, extra_cover)
        free = cv2.dilate(covered, self._kernel) == 0
        self.total[free] += frame[free]
        self.count[free] += 1

    def state(self) -> dict[str, np.ndarray]:
        return {"total": self.total, "count": self.count}

    def plate(self) -> tuple[np.ndarray, np.ndarray]:
        """-> image [S, S, 3] uint8 with the never-seen pixels filled, seen [S, S] bool."""
        seen = self.count > 0
        mean = np.zeros_like(self.total)
        mean[seen] = self.total[seen] / self.count[seen, None]
        return fill_holes(mean.astype(np.float32), seen), seen


def fill_holes(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Push-pull fill: image [H, W, 3] float, known [H, W] bool -> [H, W, 3] uint8 where unknown pixels take a
    smooth blend of the nearest known colours, coarser the further they are from them."""
    if not known.any():
        return np.full(image.shape, 127, dtype=np.uint8)
    weights = [known.astype(np.float32)]
    colors = [image * weights[0][..., None]]
    while min(weights[-1].shape) > 4:
        colors.append(cv2.pyrDown(colors[-1]))
        weights.append(cv2.pyrDown(weights[-1]))
    filled = colors[-1] / np.maximum(weights[-1], 1e-6)[..., None]
    for level in range(len(colors) - 2, -1, -1):
        height, width = weights[level].shape
        coarse = cv2.pyrUp(filled, dstsize=(width, height))
        weight = np.clip(weights[level], 0.0, 1.0)[..., None]
        own = colors[level] / np.maximum(weights[level], 1e-6)[..., None]
        filled = weight * own + (1 - weight) * coarse
    result = np.where(known[..., None], image, filled)
    return np.clip(np.round(result), 0, 255).astype(np.uint8)
