"""The records of a run directory: `run.json` (how to rebuild and drive the model) and `fit_summary.json`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from avatar.audio.driving import driving_features
from avatar.audio.features import AudioFeatureConfig
from avatar.audio.normalization import AudioNormalization
from avatar.audio.phones import AlignedSpeech
from avatar.audio.sync import shift_frames
from avatar.core.records import Record
from avatar.data.dataset import Dataset
from avatar.data.head_window import HeadWindow
from avatar.data.manifest import AudioFeaturesLayout, FileFingerprint
from avatar.model.talking_head import ClipSignals
from avatar.runs.settings import FitConfig, TrainSettings

_FIT_AGAIN = "Fit again with this version of splat-avatar"


@dataclass(frozen=True)
class RunRecord(AudioFeaturesLayout, Record):
    """`run.json`, written once when a fit starts (docs/run_format.md)."""

    FORMAT: ClassVar[str] = "splat-avatar-run"
    VERSION: ClassVar[int] = 2
    VERSION_FIX: ClassVar[str] = _FIT_AGAIN

    dataset: Path  # absolute path of the dataset when the fit started
    dataset_source: FileFingerprint  # the video the dataset was captured from
    fit: FitConfig  # the command line
    settings: TrainSettings  # the preset it resolved to
    window: HeadWindow  # the part of the crop the head is rendered in
    resolution: int  # side of the rendered head window, pixels
    intrinsics_window: tuple[tuple[float, ...], ...]  # [3, 3] camera of the rendered window
    audio_features: AudioFeatureConfig
    audio_features_shape: tuple[int, ...]
    audio_normalization: AudioNormalization
    audio_offset_frames: int  # frame i is trained with the audio of frame i + offset (avatar.audio.sync)
    audio_offset_correlation: float
    fps: float

    @property
    def K_window(self) -> np.ndarray:
        return np.asarray(self.intrinsics_window, dtype=np.float64)

    def capture_signals(self, dataset: Dataset, *, speech: AlignedSpeech | None) -> ClipSignals:
        """The capture's driving signals as this run was trained on them: its audio's driving features (with
        the phones of `speech`, `dataset.speech`, unless None; see avatar/audio/driving.py) shifted to line up
        with its mouth, its eye openness and poses."""
        tracking = dataset.tracking
        audio = driving_features(
            dataset.audio_features(), self.fps, self.audio_features, self.audio_normalization, speech=speech
        )
        audio = torch.from_numpy(shift_frames(audio, self.audio_offset_frames))
        return ClipSignals(audio, tracking.eye_openness, tracking.rotations, tracking.translations)


@dataclass(frozen=True)
class FitSummary(Record):
    """`fit_summary.json`: what a finished `avatar fit` reports."""

    FORMAT: ClassVar[str] = "splat-avatar-fit-summary"
    VERSION: ClassVar[int] = 2
    VERSION_FIX: ClassVar[str] = _FIT_AGAIN

    run: Path
    steps: int
    seconds: float  # training time of all sessions of the run (resumed ones included)
    val_psnr: float  # held-out PSNR of the head window at the last validation, dB
    gaussians: int
    audio_offset_frames: int
    device: str
    rasterizer: str
    rasterizer_note: str | None  # why our CUDA kernels did not rasterize, when they did not
    hash_grid: str  # the hash-grid module's class
    motion_frames: int  # training frames the mouth motion learned from
    smiling_frames: int  # training frames left out of it as smiles (avatar/face/smiles.py)
