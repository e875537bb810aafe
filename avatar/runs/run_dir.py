"""The run directory of `avatar fit` (docs/run_format.md): where each file lives, its run.json, and the fitted
model rebuilt from its latest checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from avatar.core.backends import HashGridName
from avatar.core.errors import AvatarError
from avatar.model.talking_head import TalkingHead
from avatar.runs.checkpoint import Checkpoint, load_checkpoint
from avatar.runs.record import RunRecord


@dataclass(frozen=True)
class RunLayout:
    """Where each part of a run lives."""

    root: Path

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def train_log(self) -> Path:
        return self.root / "train_log.csv"

    @property
    def summary(self) -> Path:
        return self.root / "fit_summary.json"

    @property
    def eval_video(self) -> Path:
        return self.root / "eval_side_by_side.mp4"

    @property
    def eval_plot(self) -> Path:
        return self.root / "eval_mouth_opening.png"

    @property
    def eval_lip_plot(self) -> Path:
        return self.root / "eval_lip_sync.png"

    @property
    def eval_driven_video(self) -> Path:
        return self.root / "eval_driven.mp4"

    @property
    def opening_transfer(self) -> Path:
        return self.root / "opening_transfer.json"

    @property
    def phone_check(self) -> Path:
        return self.root / "phone_check.json"

    @property
    def torso(self) -> Path:
        return self.root / "torso.safetensors"


def read_run(run_dir: Path) -> RunRecord:
    """The run's `run.json`: how to rebuild and drive its model."""
    path = RunLayout(Path(run_dir)).record
    if not path.is_file():
        raise AvatarError(
            "this is not an `avatar fit` run directory (no run.json)",
            path=run_dir,
            fix="Pass the --out directory of `avatar fit`",
        )
    return RunRecord.read(path)


@dataclass
class FittedModel:
    """A run's model with its latest checkpoint's weights."""

    model: TalkingHead
    record: RunRecord
    step: int  # of the checkpoint


def load_model(run_dir: Path, device: torch.device | str = "cpu") -> FittedModel:
    record = read_run(run_dir)
    checkpoint = load_checkpoint(run_dir, device)
    return FittedModel(model_from_checkpoint(checkpoint, device), record, checkpoint.step)


def model_from_checkpoint(
    checkpoint: Checkpoint, device: torch.device | str, hash_grid_backend: HashGridName = "auto"
) -> TalkingHead:
    """The talking head shaped and weighted as the checkpoint's `model.*` tensors say."""
    model = TalkingHead.from_config(
        checkpoint.meta["model"], hash_grid_backend=hash_grid_backend, device=device
    )
    prefix = "model."
    model.load_state_dict(
        {name[len(prefix) :]: value for name, value in checkpoint.tensors.items() if name.startswith(prefix)}
    )
    return model.to(device)
