"""The fitted torso of a run: `torso.safetensors`, the `TorsoModel`'s tensors and which head checkpoint it
was fitted under (docs/run_format.md)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from avatar.core.atomic import atomic_path
from avatar.core.errors import AvatarError
from avatar.model.torso import TorsoModel

TORSO_FORMAT = "splat-avatar-torso"
TORSO_VERSION = 1
REFIT = "Delete it and run `avatar fit DATASET --out RUN --resume` to fit the torso again"


def save_torso(path: Path, torso: TorsoModel, checkpoint_step: int) -> None:
    """Writes the torso's tensors, atomically, marked with the head checkpoint's step."""
    tensors = {name: value.detach().contiguous().cpu() for name, value in torso.state_dict().items()}
    metadata = {
        "format": TORSO_FORMAT,
        "version": str(TORSO_VERSION),
        "gaussians": str(torso.gaussians.num),
        "checkpoint_step": str(checkpoint_step),
    }
    with atomic_path(Path(path)) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def torso_step(path: Path) -> int | None:
    """The head checkpoint step the torso at `path` was fitted under; None when there is none or it is
    unreadable."""
    try:
        with safe_open(str(path), "pt") as file:
            metadata = file.metadata() or {}
    except (OSError, SafetensorError):
        return None
    if metadata.get("format") != TORSO_FORMAT or metadata.get("version") != str(TORSO_VERSION):
        return None
    return int(metadata["checkpoint_step"])


def load_torso(path: Path, checkpoint_step: int, device: torch.device | str = "cpu") -> TorsoModel | None:
    """The torso at `path`, or None when the run has none; AvatarError when it is unreadable or was fitted
    under another head checkpoint than `checkpoint_step`."""
    path = Path(path)
    if not path.exists():
        return None
    step = torso_step(path)
    if step is None:
        raise AvatarError("the run's torso file is unreadable or of another format", path=path, fix=REFIT)
    if step != checkpoint_step:
        raise AvatarError(
            f"the torso was fitted under the head of step {step}, the run's checkpoint is at step {checkpoint_step}",
            path=path,
            fix=REFIT,
        )
    with safe_open(str(path), "pt", device=str(device)) as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    torso = TorsoModel.empty(int(tensors["gaussians.means"].shape[0]), device)
    torso.load_state_dict(tensors)
    return torso.to(device).eval()
