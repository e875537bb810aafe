"""Lip-sync metrics from mediapipe's face mesh on real and rendered frames.

LMD (landmark distance) here is the mean 2-D Euclidean distance, in pixels at the frames' own resolution,
between the rendered and the real frame's 40 lip landmarks (outer and inner contour), after removing the
mean (x, y) offset between the two frames' whole faces (all 478 landmarks). Removing that offset makes LMD
measure the mouth's shape and its motion relative to the face, not head placement, which the photometric
metrics already see. z is ignored: mediapipe's depth is relative and noisy. Averages over frames are taken
over the frames where both images show a face.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from avatar.face.landmarks import LIP_CONTOURS, NUM_LANDMARKS
from avatar.face.measures import eye_openness, mouth_openness
from avatar.face.mediapipe_models import face_mesh, mesh_landmarks


class FaceMeshRunner:
    """Mediapipe's face mesh in static-image mode (every frame detected afresh, no tracking between them),
    most prominent face only. Use as a context manager, or call close()."""

    def __init__(self) -> None:
        self._mesh = face_mesh(static_images=True, max_faces=1)

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """[H, W, 3] uint8 RGB -> [478, 3] float32 landmarks in pixels (z on the x scale), or None if no face."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {image.shape} {image.dtype}")
        faces = mesh_landmarks(self._mesh, np.ascontiguousarray(image))
        return faces[0] if len(faces) else None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMeshRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def landmark_distance(pred: np.ndarray, real: np.ndarray, indices: Sequence[int] = LIP_CONTOURS) -> float:
    """Mean (x, y) distance in pixels over `indices` after removing the mean offset of all landmarks.

    pred, real: [478, 3] (or [478, 2]) landmarks of the same face in two images of the same size.
    """
    if pred.shape[0] != NUM_LANDMARKS or real.shape[0] != NUM_LANDMARKS:
        raise ValueError(f"expected [{NUM_LANDMARKS}, 2 or 3] landmarks, got {pred.shape} and {real.shape}")
    difference = pred[:, :2].astype(np.float64) - real[:, :2].astype(np.float64)
    difference -= difference.mean(axis=0)
    return float(np.linalg.norm(difference[list(indices)], axis=-1).mean())


def mouth_opening(landmarks: np.ndarray) -> float:
    """[478, 3] -> inner-lip gap over mouth width (0 when closed, about 0.5 to 1 wide open)."""
    return float(mouth_openness(landmarks))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two [N] series over the pairs where both are finite; NaN where fewer than two
    such pairs remain or either series is constant over them."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"series differ in shape: {a.shape} and {b.shape}")
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip(a @ b / math.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


@dataclass(frozen=True)
class MouthMetricsResult:
    """Lip metrics over N frame pairs."""

    lmd_px: float  # mean LMD over frames with a face in both; NaN if there are none
    mouth_open_real: np.ndarray  # [N] float64 mouth opening per frame, NaN where no face
    mouth_open_rendered: np.ndarray  # [N]
    mouth_open_correlation: float  # Pearson r of the two (NaN if undefined, e.g. a mouth that never moves)
    eye_open_correlation: float  # Pearson r of the real and rendered eye openness (blinks), NaN if undefined
    frames_without_face: int  # rendered frames where mediapipe finds no face (failures)
    real_frames_without_face: int  # real frames without a face: left out of every average
    frames: int


class MouthMetrics:
    """Lip metrics accumulated one (real, rendered) frame pair at a time; `result()` as `mouth_metrics`."""

    def __init__(self) -> None:
        self._runner = FaceMeshRunner()
        self.open_real: list[float] = []
        self.open_rendered: list[float] = []
        self.eye_real: list[float] = []
        self.eye_rendered: list[float] = []
        self.distances: list[float] = []
        self.rendered_missing = 0
        self.real_missing = 0

    def add(self, real: np.ndarray, rendered: np.ndarray) -> None:
        if real.shape != rendered.shape:
            raise ValueError(f"frame {len(self.open_real)}: real {real.shape} and rendered {rendered.shape}")
        real_points = self._runner.landmarks(real)
        rendered_points = self._runner.landmarks(rendered)
        self.real_missing += real_points is None
        self.rendered_missing += rendered_points is None
        self.open_real.append(math.nan if real_points is None else mouth_opening(real_points))
        self.open_rendered.append(math.nan if rendered_points is None else mouth_opening(rendered_points))
        self.eye_real.append(math.nan if real_points is None else float(eye_openness(real_points)))
        self.eye_rendered.append(
            math.nan if rendered_points is None else float(eye_openness(rendered_points))
        )
        if real_points is not None and rendered_points is not None:
            self.distances.append(landmark_distance(rendered_points, real_points))

    def result(self) -> MouthMetricsResult:
        mouth_open_real = np.asarray(self.open_real, dtype=np.float64)
        mouth_open_rendered = np.asarray(self.open_rendered, dtype=np.float64)
        return MouthMetricsResult(
            lmd_px=float(np.mean(self.distances)) if self.distances else math.nan,
            mouth_open_real=mouth_open_real,
            mouth_open_rendered=mouth_open_rendered,
            mouth_open_correlation=pearson(mouth_open_real, mouth_open_rendered),
            eye_open_correlation=pearson(np.asarray(self.eye_real), np.asarray(self.eye_rendered)),
            frames_without_face=self.rendered_missing,
            real_frames_without_face=self.real_missing,
            frames=len(self.open_real),
        )

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> MouthMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def mouth_metrics(
    real_frames: Iterable[np.ndarray], rendered_frames: Iterable[np.ndarray]
) -> MouthMetricsResult:
    """Lip metrics over two equally long streams of [H, W, 3] uint8 RGB frames, one frame pair at a time."""
    with MouthMetrics() as metrics:
        for real, rendered in zip(real_frames, rendered_frames, strict=True):
            metrics.add(real, rendered)
        return metrics.result()
