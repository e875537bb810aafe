"""The fixed square window of the crop that the head occupies over a clip; the head is rendered only there."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar.data.dataset import Dataset
from avatar.data.manifest import PixelSquare


@dataclass(frozen=True)
class HeadWindow(PixelSquare):
    """The square of the dataset's crop (in crop pixels) that the head is rendered in."""

    def intrinsics(self, K: np.ndarray, out_px: int) -> np.ndarray:
        """[3, 3] crop intrinsics -> [3, 3] intrinsics of the window resampled to out_px x out_px."""
        scale = out_px / self.side
        window = np.array(K, dtype=np.float64)
        window[0, 2] -= self.x0
        window[1, 2] -= self.y0
        window[:2] *= scale
        return window

    def cut(self, image: np.ndarray, out_px: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """[S, S, ...] crop image -> [out_px, out_px, ...] window."""
        window = image[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]
        if out_px == self.side:
            return np.ascontiguousarray(window)
        if out_px > self.side:
            interpolation = cv2.INTER_LINEAR
        return cv2.resize(window, (out_px, out_px), interpolation=interpolation)


def head_window(
    dataset: Dataset, indices: np.ndarray, *, margin: float = 0.08, samples: int = 60
) -> HeadWindow:
    """The square around every head mask and face landmark of the given frames (a spread of up to `samples` of
    them for the masks), grown by `margin` of its side on each edge and kept inside the crop."""
    size = dataset.size
    picks = indices[np.linspace(0, len(indices) - 1, min(samples, len(indices))).round().astype(int)]
    lo = np.array([size, size], dtype=np.float64)
    hi = np.zeros(2, dtype=np.float64)
    for index in picks:
        ys, xs = np.nonzero(dataset.masks(int(index))[..., 1] > 127)
        if len(xs):
            lo = np.minimum(lo, [xs.min(), ys.min()])
            hi = np.maximum(hi, [xs.max() + 1, ys.max() + 1])
    landmarks = dataset.tracking.landmarks[indices, :, :2].reshape(-1, 2)
    lo = np.minimum(lo, landmarks.min(0))
    hi = np.maximum(hi, landmarks.max(0))
    side = float((hi - lo).max()) * (1 + 2 * margin)
    side = int(min(size, np.ceil(side)))
    center = (lo + hi) / 2
    x0 = int(np.clip(round(center[0] - side / 2), 0, size - side))
    y0 = int(np.clip(round(center[1] - side / 2), 0, size - side))
    return HeadWindow(x0, y0, side)
