"""The records a capture writes for the later stages: `dataset.json` and `capture_report.json`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from avatar.audio.features import AudioFeatureConfig
from avatar.core.records import Record

MASK_CHANNELS = ("person", "head", "torso", "mouth")
_RECAPTURE = "Re-run `avatar capture` on the original video with this version of splat-avatar"


@dataclass(frozen=True)
class FileFingerprint:
    """Which file a dataset was made from: a video moved or renamed is still recognised by its digest."""

    name: str
    size_bytes: int
    sha256: str

    @staticmethod
    def of(path: Path) -> FileFingerprint:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return FileFingerprint(Path(path).name, Path(path).stat().st_size, digest.hexdigest())


@dataclass(frozen=True)
class PixelSquare:
    """A square of an image, in that image's pixels."""

    x0: int
    y0: int
    side: int


@dataclass(frozen=True)
class AudioTrack:
    sample_rate: int
    source: FileFingerprint  # the video's own audio, or the file given with --audio


class AudioFeaturesLayout:
    """For records with `audio_features` and `audio_features_shape` fields: in their JSON the shape is the
    `shape` entry of `audio_features`, as the first dataset and run files wrote it."""

    def _encode(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        shape = fields.pop("audio_features_shape")
        return {**fields, "audio_features": {**fields["audio_features"], "shape": shape}}

    @classmethod
    def _decode(cls, fields: dict[str, Any]) -> dict[str, Any]:
        features = dict(fields["audio_features"])
        return {**fields, "audio_features": features, "audio_features_shape": features.pop("shape")}


@dataclass(frozen=True)
class DatasetManifest(AudioFeaturesLayout, Record):
    """`dataset.json`: what a finished capture holds (docs/dataset_format.md)."""

    FORMAT: ClassVar[str] = "splat-avatar-dataset"
    VERSION: ClassVar[int] = 1
    VERSION_FIX: ClassVar[str] = _RECAPTURE

    num_frames: int
    fps: float
    size: int  # side of the square crop, pixels
    source: FileFingerprint
    audio: AudioTrack
    audio_features: AudioFeatureConfig
    audio_features_shape: tuple[int, ...]  # [frames, window steps, mel bands]
    crop: PixelSquare  # the crop, in pixels of the upright source video
    source_size: tuple[int, int]  # width, height of the upright source video
    mask_channels: tuple[str, ...] = MASK_CHANNELS


@dataclass(frozen=True)
class SourceVideo:
    path: str
    width: int
    height: int
    rotation_ccw_deg: int
    codec: str
    duration_s: float
    fps: float


@dataclass(frozen=True)
class CaptureReport(Record):
    """`capture_report.json`: what `avatar capture` measured, for the person who ran it."""

    FORMAT: ClassVar[str] = "splat-avatar-capture-report"
    VERSION: ClassVar[int] = 1
    VERSION_FIX: ClassVar[str] = _RECAPTURE

    frames_total: int
    frames_tracked: int
    frames_interpolated: int
    frames_missing: int
    fps: float
    size: int
    focal_px: float
    focal_estimated: bool
    reprojection_error_px: float
    reprojection_error_px_max: float
    blinks: int
    multi_face_frames: int
    background_unseen_fraction: float
    background_face_found: bool
    train_frames: int
    val_frames: int
    seconds: float  # wall time of this run of `avatar capture`
    stage_seconds: dict[str, float]  # the stages this run computed (not those a resumed run reused)
    source: SourceVideo
    crop: PixelSquare
    warnings: tuple[str, ...] = field(default=())

    @property
    def frames_per_second(self) -> float:
        return self.frames_total / max(self.seconds, 1e-9)
