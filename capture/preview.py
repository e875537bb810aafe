"""A contact sheet of the capture: landmarks, masks and head-pose axes over sampled frames."""

from __future__ import annotations

import cv2
import numpy as np

from avatar.core.atomic import write_bytes
from avatar.data.dataset import DatasetLayout, Tracking, read_masks

TILE = 256
AXIS_LENGTH_M = 0.06


def _project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, K: np.ndarray) -> np.ndarray:
    camera = points @ rotation.T + translation
    pixels = camera @ K.T
    return pixels[:, :2] / pixels[:, 2:3]


def annotate_frame(image: np.ndarray, masks: np.ndarray, tracking: Tracking, index: int) -> np.ndarray:
    """[S, S, 3] RGB, [S, S, 4] masks -> [S, S, 3] RGB with head (green), torso (blue) and mouth (red) tints,
    landmarks and the head's x (red), y (green), z (blue) axes."""
    out = image.astype(np.float32)
    for channel, color in ((1, (0, 255, 0)), (2, (0, 80, 255)), (3, (255, 0, 0))):
        weight = (masks[..., channel : channel + 1] > 127) * 0.35
        out = out * (1 - weight) + np.asarray(color, np.float32) * weight
    out = np.clip(out, 0, 255).astype(np.uint8)
    scale = image.shape[0] / 512
    if tracking.valid[index]:
        color = (255, 255, 0) if tracking.found[index] else (255, 128, 0)
        for x, y, _ in tracking.landmarks[index]:
            cv2.circle(out, (int(round(x)), int(round(y))), max(1, int(scale)), color, -1, cv2.LINE_AA)
        origin = tracking.canonical_landmarks.mean(0)
        points = np.concatenate([origin[None], origin + AXIS_LENGTH_M * np.eye(3)])
        pixels = _project(
            points, tracking.rotations[index], tracking.translations[index], tracking.intrinsics
        )
        start = tuple(int(v) for v in np.round(pixels[0]))
        for end, color in zip(pixels[1:], ((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            cv2.line(
                out, start, tuple(int(v) for v in np.round(end)), color, max(2, int(3 * scale)), cv2.LINE_AA
            )
    return out


def contact_sheet(layout: DatasetLayout, num_frames: int, columns: int = 4, rows: int = 3) -> np.ndarray:
    """Writes layout.preview (a PNG of columns x rows annotated frames spread over the clip) and returns it."""
    with np.load(layout.tracking) as arrays:
        tracking = Tracking.from_arrays(arrays)
    picks = np.linspace(0, num_frames - 1, columns * rows).round().astype(int)
    sheet = np.zeros((rows * TILE, columns * TILE, 3), dtype=np.uint8)
    for slot, index in enumerate(picks):
        image = cv2.cvtColor(cv2.imread(str(layout.frame(index))), cv2.COLOR_BGR2RGB)
        tile = annotate_frame(image, read_masks(layout.mask(index)), tracking, index)
        tile = cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_AREA)
        label = f"#{index} eye {tracking.eye_openness[index]:.2f} mouth {tracking.mouth_openness[index]:.2f}"
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        row, column = divmod(slot, columns)
        sheet[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE] = tile
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    write_bytes(layout.preview, data.tobytes())
    return sheet
