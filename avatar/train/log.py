"""The fit's per-step log, `train_log.csv` (appended to when a run resumes)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType

from avatar.runs.settings import Stage

TERMS = ("loss", "l1", "dssim", "alpha", "mouth", "offsets", "motion")
COLUMNS = ("step", "stage", *TERMS, "gaussians", "val_psnr", "seconds")


class TrainLog:
    """A CSV row per step; use as a context manager."""

    def __init__(self, path: Path, *, append: bool):
        new = not append or not Path(path).exists()
        self._file = open(path, "w" if new else "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)

    def write(
        self,
        step: int,
        stage: Stage,
        terms: dict[str, float],
        gaussians: int,
        val_psnr: float,
        seconds: float,
    ) -> None:
        values = [f"{terms[name]:.5f}" for name in TERMS]
        self._writer.writerow([step, stage.value, *values, gaussians, f"{val_psnr:.3f}", f"{seconds:.3f}"])

    def flush(self) -> None:
        self._file.flush()

    def __enter__(self) -> TrainLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._file.close()
