"""Per-frame eye and mouth signals, normalised per clip, and blink detection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.face.measures import eye_openness, mouth_openness
from capture.face_track import runs


@dataclass
class FaceSignals:
    eye_openness: np.ndarray  # [N] 1 = the clip's usual open eye, 0 = closed
    mouth_openness: np.ndarray  # [N] 0 = the clip's closed mouth, 1 = its widest opening
    blink: np.ndarray  # [N] bool
    blink_centers: list[int]


def _percentile(values: np.ndarray, valid: np.ndarray, q: float) -> float:
    return float(np.percentile(values[valid], q)) if valid.any() else 1.0


def face_signals(
    landmarks: np.ndarray,  # [N, 478, 3]
    valid: np.ndarray,  # [N] bool
    *,
    blink_threshold: float = 0.6,
) -> FaceSignals:
    """Eye openness is divided by the clip's open-eye level (its 90th percentile); mouth openness is mapped so the
    clip's 2nd percentile is 0 and its 98th is 1. A blink is a run of frames with eye openness below
    `blink_threshold` that dips below half of it."""
    eyes = eye_openness(landmarks)
    eyes = eyes / max(_percentile(eyes, valid, 90), 1e-6)
    mouth = mouth_openness(landmarks)
    low, high = _percentile(mouth, valid, 2), _percentile(mouth, valid, 98)
    mouth = np.clip((mouth - low) / max(high - low, 1e-6), 0.0, 1.0)
    eyes = np.where(valid, eyes, 1.0).astype(np.float32)
    mouth = np.where(valid, mouth, 0.0).astype(np.float32)
    blink = np.zeros(len(eyes), dtype=bool)
    centers = []
    for start, stop in runs((eyes < blink_threshold) & valid):
        segment = eyes[start:stop]
        if segment.min() < 0.5 * blink_threshold:
            blink[start:stop] = True
            centers.append(start + int(np.argmin(segment)))
    return FaceSignals(eyes, mouth, blink, centers)
