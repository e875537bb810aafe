"""One fixed square crop for a whole clip, around head and shoulders."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from avatar.core.errors import AvatarError
from avatar.data.manifest import PixelSquare


@dataclass(frozen=True)
class SquareCrop(PixelSquare):
    """A square window of the upright source frame, in source pixels."""

    def apply(self, image: np.ndarray, size: int) -> np.ndarray:
        """[H, W, 3] source frame -> [size, size, 3] crop."""
        window = image[self.y0 : self.y0 + self.side, self.x0 : self.x0 + self.side]
        interpolation = cv2.INTER_AREA if self.side > size else cv2.INTER_LINEAR
        return cv2.resize(window, (size, size), interpolation=interpolation)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, int]) -> SquareCrop:
        return SquareCrop(int(data["x0"]), int(data["y0"]), int(data["side"]))


def choose_crop(
    face_boxes: np.ndarray,  # [M, 4] x0, y0, x1, y1 of the face in frames sampled over the clip
    width: int,
    height: int,
    *,
    face_fraction: float = 0.32,
    face_center_height: float = 0.42,
) -> SquareCrop:
    """The crop shows head and shoulders: the face spans `face_fraction` of the side, its centre sits at
    `face_center_height` of the side from the top, and every sampled face position fits inside. The crop stays
    inside the frame, shrinking to the frame's short side if needed."""
    if len(face_boxes) == 0:
        raise AvatarError("no face boxes to place the crop around")
    centers = np.stack(
        [(face_boxes[:, 0] + face_boxes[:, 2]) / 2, (face_boxes[:, 1] + face_boxes[:, 3]) / 2], 1
    )
    face_size = float(
        np.median(np.maximum(face_boxes[:, 2] - face_boxes[:, 0], face_boxes[:, 3] - face_boxes[:, 1]))
    )
    motion = centers.max(0) - centers.min(0)
    side = max(face_size / face_fraction, float(motion.max()) + 2.2 * face_size)
    side = int(round(min(side, width, height)))
    center = (centers.max(0) + centers.min(0)) / 2
    x0 = int(round(np.clip(center[0] - side / 2, 0, width - side)))
    y0 = int(round(np.clip(center[1] - face_center_height * side, 0, height - side)))
    return SquareCrop(x0, y0, side)
