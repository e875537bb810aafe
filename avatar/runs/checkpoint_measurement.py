"""Measurements of a fitted checkpoint kept beside it in the run directory, so that later renders of the same
checkpoint read them instead of measuring again (`opening_transfer.json`, `phone_check.json`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from avatar.core.errors import AvatarError

_log = logging.getLogger(__name__)


class CheckpointMeasurement(Protocol):
    checkpoint_step: int  # of the checkpoint measured

    def write(self, path: Path) -> None: ...


M = TypeVar("M", bound=CheckpointMeasurement)


def cached_measurement(
    path: Path, read: Callable[[Path], M], checkpoint_step: int, measure: Callable[[], M]
) -> M:
    """`read(path)` if it was measured on `checkpoint_step`, else `measure()`, kept at `path` when the run
    directory is writable (a read-only run is measured again next time)."""
    if path.is_file():
        try:
            kept = read(path)
            if kept.checkpoint_step == checkpoint_step:
                return kept
        except AvatarError as error:
            _log.info("measuring %s again: %s", path.name, error)
    measured = measure()
    try:
        measured.write(path)
    except OSError as error:
        _log.info("%s could not be kept (%s)", path, error)
    return measured
