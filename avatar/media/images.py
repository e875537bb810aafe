"""Image files written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avatar.core.atomic import write_bytes


def write_png(path: Path, image: np.ndarray) -> None:
    """[H, W, 3] uint8 RGB or [H, W, 4] RGBA -> PNG file, written atomically."""
    order = [2, 1, 0, 3] if image.shape[-1] == 4 else [2, 1, 0]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[:, :, order]))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as PNG")
    write_bytes(Path(path), encoded.tobytes())
