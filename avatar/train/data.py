"""Data preparation of a fit: targets, driving signals and mouth-motion targets, made once from the dataset."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from avatar.audio.sync import speech_loudness
from avatar.data.dataset import Dataset
from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.face.smiles import SMILE_LANDMARKS, smile_score, smiling_frames
from avatar.model.landmark_motion import rest_motion, tracked_motion, tracked_positions
from avatar.model.talking_head import ClipSignals
from avatar.runs.record import RunRecord
from avatar.train.frames import TrainingFrames


@dataclass
class TrainingData:
    frames: TrainingFrames  # the training frames' targets
    val: TrainingFrames | None  # a spread of the held-out frames, None when the dataset holds none out
    signals: ClipSignals  # every frame's audio (lined up with the mouth), eye openness and pose
    motion_targets: Tensor  # [F + 1, J, 3] tracked mouth and jaw motion of every frame, then at rest
    smiling: np.ndarray  # [F] bool, the frames that smile (avatar/face/smiles.py)
    K: Tensor  # [3, 3] camera of the rendered head window
    resolution: int
    background: Tensor  # [R, R, 3] the background plate's head window

    @property
    def train_indices(self) -> np.ndarray:
        return self.frames.indices

    @cached_property
    def motion_indices(self) -> np.ndarray:
        """[M] the training frames the mouth motion learns from: those that do not smile."""
        return self.train_indices[~self.smiling[self.train_indices]]


def prepare_training_data(
    dataset: Dataset, run: RunRecord, val_frames: int, device: torch.device, *, phones: bool, progress: bool
) -> TrainingData:
    split = dataset.split
    frames = TrainingFrames(dataset, split.train, run.window, run.resolution, progress=progress)
    val = None
    if len(split.val):
        count = min(val_frames, len(split.val))
        rows = np.linspace(0, len(split.val) - 1, count).round().astype(int)
        val = TrainingFrames(dataset, split.val[rows], run.window, run.resolution, progress=False)
    signals = run.capture_signals(dataset, speech=dataset.speech if phones else None)
    targets = tracked_motion(dataset.tracking, MOUTH_AND_JAW)
    log_mel = np.asarray(signals.audio)[..., : run.audio_features.n_mels]
    rest = rest_motion(targets, speech_loudness(log_mel), frames.indices)
    smile_points = tracked_positions(dataset.tracking, SMILE_LANDMARKS)
    return TrainingData(
        frames=frames,
        val=val,
        signals=signals,
        motion_targets=torch.from_numpy(np.concatenate([targets, rest[None]])).to(device),
        smiling=smiling_frames(smile_score(smile_points, frames.indices), frames.indices),
        K=torch.as_tensor(run.K_window, dtype=torch.float32, device=device),
        resolution=run.resolution,
        background=frames.background.to(device),
    )
