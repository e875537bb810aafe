"""The capture dataset (`DatasetManifest`: format `splat-avatar-dataset`, version 1): reading it, and the names
of its files.

The format is described in docs/dataset_format.md; `capture` writes it, `fit`, `render` and `eval` read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from avatar.audio.phones import AlignedSpeech, align_speech
from avatar.core.errors import AvatarError
from avatar.data.manifest import DatasetManifest
from avatar.media.audio_io import load_audio


@dataclass(frozen=True)
class DatasetLayout:
    """Where each part of a dataset lives."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "dataset.json"

    @property
    def state(self) -> Path:
        return self.root / "capture_state.json"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def masks(self) -> Path:
        return self.root / "masks"

    @property
    def background(self) -> Path:
        return self.root / "background.png"

    @property
    def tracking(self) -> Path:
        return self.root / "tracking.npz"

    @property
    def audio(self) -> Path:
        return self.root / "audio.wav"

    @property
    def audio_features(self) -> Path:
        return self.root / "audio_features.npy"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def report(self) -> Path:
        return self.root / "capture_report.json"

    @property
    def preview(self) -> Path:
        return self.root / "preview.png"

    def frame(self, index: int) -> Path:
        return self.frames / f"{index:06d}.jpg"

    def mask(self, index: int) -> Path:
        return self.masks / f"{index:06d}.png"


@dataclass
class Tracking:
    """Per-frame tracking of a dataset; N frames, crop pixels, OpenCV camera (x right, y down, z forward)."""

    landmarks: np.ndarray  # [N, 478, 3] x, y in crop pixels; z relative depth in the same pixel scale
    found: np.ndarray  # [N] bool: the face mesh saw the face
    interpolated: np.ndarray  # [N] bool: a short gap filled by interpolation
    valid: np.ndarray  # [N] bool: found or interpolated (use these frames for training)
    intrinsics: np.ndarray  # [3, 3] pinhole camera of the crop
    rotations: np.ndarray  # [N, 3, 3] head -> camera
    translations: np.ndarray  # [N, 3] metres: X_cam = R @ X_head + t
    canonical_landmarks: np.ndarray  # [478, 3] rigid canonical face shape in the head frame, metres
    reprojection_error_px: np.ndarray  # [N]
    eye_openness: np.ndarray  # [N] 1 = open, 0 = closed
    mouth_openness: np.ndarray  # [N] 0 = closed, 1 = the clip's widest
    blink: np.ndarray  # [N] bool

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(value) for name, value in self.__dict__.items()}

    @staticmethod
    def from_arrays(arrays) -> Tracking:
        return Tracking(**{name: np.asarray(arrays[name]) for name in Tracking.__dataclass_fields__})

    @property
    def viewmats(self) -> np.ndarray:
        """[N, 4, 4] head -> camera transforms."""
        mats = np.tile(np.eye(4, dtype=np.float64), (len(self.rotations), 1, 1))
        mats[:, :3, :3] = self.rotations
        mats[:, :3, 3] = self.translations
        return mats


@dataclass(frozen=True)
class Split:
    """Frame indices for training and the held-out frames after them (`split.json`)."""

    train: np.ndarray  # [T] int64
    val: np.ndarray  # [V] int64


class Dataset:
    """A finished capture dataset, opened for reading. Frames and masks are read from disk one at a time."""

    def __init__(self, root: Path):
        self.layout = DatasetLayout(Path(root))
        manifest_path = self.layout.manifest
        if not manifest_path.is_file():
            raise AvatarError(
                "this is not a finished capture dataset (no dataset.json)",
                path=self.layout.root,
                fix="Run `avatar capture VIDEO --out DIR` to make one, or re-run it to finish an interrupted capture",
            )
        self.manifest = DatasetManifest.read(manifest_path)

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def num_frames(self) -> int:
        return self.manifest.num_frames

    @property
    def fps(self) -> float:
        return self.manifest.fps

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def audio_sample_rate(self) -> int:
        return self.manifest.audio.sample_rate

    @cached_property
    def speech(self) -> AlignedSpeech:
        """The phones of the capture's audio (pocketsphinx, once per Dataset), or why there are none."""
        rate = self.audio_sample_rate
        return align_speech(load_audio(self.layout.audio, rate), rate)

    @cached_property
    def tracking(self) -> Tracking:
        with np.load(self.layout.tracking) as arrays:
            return Tracking.from_arrays(arrays)

    @cached_property
    def split(self) -> Split:
        data = json.loads(self.layout.split.read_text())
        return Split(np.asarray(data["train"], dtype=np.int64), np.asarray(data["val"], dtype=np.int64))

    def frame(self, index: int) -> np.ndarray:
        """-> [S, S, 3] uint8 RGB."""
        image = cv2.imread(str(self.layout.frame(index)), cv2.IMREAD_COLOR)
        if image is None:
            raise AvatarError(f"frame {index} is missing or unreadable", path=self.layout.frame(index))
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def masks(self, index: int) -> np.ndarray:
        """-> [S, S, 4] uint8: person (soft), head, torso, mouth interior."""
        return read_masks(self.layout.mask(index))

    def background(self) -> np.ndarray:
        """-> [S, S, 3] uint8 RGB."""
        return cv2.cvtColor(cv2.imread(str(self.layout.background), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def audio_features(self) -> np.ndarray:
        """-> [N, window, n_mels] float32."""
        return np.load(self.layout.audio_features).astype(np.float32)


def write_masks(path: Path, masks: np.ndarray) -> None:
    """[S, S, 4] uint8 (person, head, torso, mouth) -> a 4-channel PNG in that channel order."""
    ok, data = cv2.imencode(".png", masks[..., [2, 1, 0, 3]], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(data.tobytes())


def read_masks(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise AvatarError("mask file is missing or unreadable", path=path, fix="Re-run `avatar capture`")
    return image[..., [2, 1, 0, 3]]
