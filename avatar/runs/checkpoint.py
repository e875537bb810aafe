"""Checkpoints: tensors in safetensors, everything else in JSON, both written atomically.

A run directory holds `checkpoint.json`, which names the current tensor file and its SHA-256; tensor files
are written first under a new name, then `checkpoint.json` is replaced, then the older tensor file (all but
the previous one) is removed. A crash at any point leaves a complete checkpoint to resume from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avatar.core.atomic import atomic_path, write_json
from avatar.core.errors import AvatarError

CHECKPOINT_FORMAT = "splat-avatar-checkpoint"
CHECKPOINT_VERSION = 1
INDEX_NAME = "checkpoint.json"


@dataclass
class Checkpoint:
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Writes `run_dir/checkpoint_{step}.safetensors` and points `checkpoint.json` at it."""
    run_dir = Path(run_dir)
    path = run_dir / f"checkpoint_{step:07d}.safetensors"
    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    with atomic_path(path) as temporary:
        save_file(contiguous, str(temporary))
    index_path = run_dir / INDEX_NAME
    previous = _read_index(index_path) if index_path.exists() else None
    write_json(
        index_path,
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": step,
            "file": path.name,
            "sha256": _sha256(path),
            "previous": None if previous is None else previous.get("file"),
            "meta": meta,
        },
    )
    keep = {path.name} | ({previous["file"]} if previous else set())
    for old in run_dir.glob("checkpoint_*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return path


def _read_index(index_path: Path) -> dict:
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AvatarError(
            f"the checkpoint index is unreadable ({error})",
            path=index_path,
            fix="Start the fit again without --resume, into a new --out directory",
        ) from error
    if index.get("format") != CHECKPOINT_FORMAT or index.get("version") != CHECKPOINT_VERSION:
        raise AvatarError(
            f"not a {CHECKPOINT_FORMAT} version {CHECKPOINT_VERSION} index",
            path=index_path,
            fix="Fit again with this version of splat-avatar",
        )
    return index


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / INDEX_NAME).is_file()


def load_checkpoint(run_dir: Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Loads the checkpoint that `checkpoint.json` names, checking its SHA-256."""
    run_dir = Path(run_dir)
    index_path = run_dir / INDEX_NAME
    if not index_path.is_file():
        raise AvatarError(
            "no checkpoint in this run directory",
            path=run_dir,
            fix="Pass the --out directory of an `avatar fit` run (it holds checkpoint.json)",
        )
    index = _read_index(index_path)
    path = run_dir / index["file"]
    if not path.is_file():
        raise AvatarError(
            f"the checkpoint file {index['file']} named by checkpoint.json is missing",
            path=run_dir,
            fix="Restore the file or fit again",
        )
    if _sha256(path) != index["sha256"]:
        raise AvatarError(
            "the checkpoint file is corrupt (its SHA-256 does not match checkpoint.json)",
            path=path,
            fix="Fit again, or restore the file from a backup",
        )
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise AvatarError(f"the checkpoint cannot be read ({error})", path=path, fix="Fit again") from error
    return Checkpoint(step=int(index["step"]), tensors=tensors, meta=index["meta"])
