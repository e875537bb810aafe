"""Writes that never leave a half-written file: write beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path in the same folder; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=(suffix if suffix is not None else path.suffix) + ".partial",
        dir=path.parent,
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())


def write_json(path: Path, data: Any) -> None:
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.save(file, array)


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Calls writer(temporary_path) and moves the result into place."""
    with atomic_path(path) as temporary:
        writer(temporary)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yields `path.partial/` (emptied first); on success it replaces `path/`, on error it stays for inspection
    and is emptied by the next attempt."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    yield partial
    if path.exists():
        shutil.rmtree(path)
    os.replace(partial, path)
