"""How far a fitted head's rendered mouth opens for the motion it is given, against the person's real mouth.

The Gaussians around the lips follow the mouth's landmarks through a kernel and are drawn in a small window
(128 px in the tiny preset), so even a training frame rendered with its own tracked mouth motion opens less
than the real frame: the face mesh's mouth opening (inner-lip gap / mouth width) of such renders varied 0.71 to
0.87 as much as the real frames' did in four fits of a 20 s phone clip, 0.75 to 0.84 in three of the Obama
clip (tiny preset). A driven clip whose motion has the person's
amplitude (avatar/drive/articulation.py) then still shows a mouth that moves too little. So a run's transfer is
measured once, on `FRAMES` training frames spread over the clip, each rendered with its tracked motion and
composited as a render is:

    transfer = std of the rendered frames' opening / std of the real frames' opening

and the articulation gain of every driven clip is divided by it, within [1 / MAX_CORRECTION, MAX_CORRECTION]
(`OpeningTransfer.correction`). Scaling about the motion of silence, as the gain does, keeps closures closed.
The measurement is kept beside the checkpoint it was made on (`opening_transfer.json`), so later renders of
the same checkpoint read it instead of measuring again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from avatar.core.records import Record
from avatar.metrics.landmarks import FaceMeshRunner, mouth_opening
from avatar.model.deformation import FrameConditions
from avatar.runs.checkpoint_measurement import cached_measurement

FRAMES = 40  # training frames rendered to measure the transfer
MAX_CORRECTION = 1.5
MIN_MEASURED = 10  # fewer frames in which the face mesh finds both faces: not measured


@dataclass(frozen=True)
class OpeningTransfer(Record):
    """A fitted checkpoint's mouth-opening transfer (module docstring), as `opening_transfer.json` keeps it."""

    FORMAT: ClassVar[str] = "splat-avatar-opening-transfer"
    VERSION: ClassVar[int] = 1

    checkpoint_step: int  # of the checkpoint measured
    frames: int  # frames in which the face mesh found the rendered and the real face
    rendered_spread: float  # std of the rendered frames' mouth opening
    real_spread: float  # std of the real frames' mouth opening

    @property
    def transfer(self) -> float:
        """Rendered over real spread; NaN when it could not be measured."""
        if self.frames < MIN_MEASURED or not self.real_spread > 0:
            return math.nan
        return self.rendered_spread / self.real_spread

    @property
    def correction(self) -> float:
        """What the articulation gain is multiplied by: 1 / transfer within [1 / MAX_CORRECTION,
        MAX_CORRECTION]; 1 when the transfer could not be measured."""
        transfer = self.transfer
        if not (math.isfinite(transfer) and transfer > 0):
            return 1.0
        return float(np.clip(1.0 / transfer, 1.0 / MAX_CORRECTION, MAX_CORRECTION))


def measure_opening_transfer(
    render: Callable[[int, FrameConditions], np.ndarray],
    conditions: Callable[[int], FrameConditions],
    real_frame: Callable[[int], np.ndarray],
    tracked_motion: np.ndarray,
    frames: np.ndarray,
    checkpoint_step: int,
) -> OpeningTransfer:
    """Renders `frames` with their tracked mouth motion and measures the transfer.

    Args:
        render: (frame index, conditions) -> [S, S, 3] uint8, the frame as a render composites it
        conditions: frame index -> its FrameConditions (batch of 1)
        real_frame: frame index -> [S, S, 3] uint8, the captured frame
        tracked_motion: np.ndarray  # [F, J, 3] the capture's tracked mouth motion
        frames: np.ndarray  # [T] the frames to measure
    """
    rendered, real = [], []
    with FaceMeshRunner() as runner:
        for index in frames:
            index = int(index)
            motion = torch.from_numpy(np.ascontiguousarray(tracked_motion[index][None])).float()
            image = render(index, replace(conditions(index), motion=motion))
            points_rendered, points_real = runner.landmarks(image), runner.landmarks(real_frame(index))
            if points_rendered is not None and points_real is not None:
                rendered.append(mouth_opening(points_rendered))
                real.append(mouth_opening(points_real))
    return OpeningTransfer(
        checkpoint_step=checkpoint_step,
        frames=len(rendered),
        rendered_spread=float(np.std(rendered)) if rendered else math.nan,
        real_spread=float(np.std(real)) if real else math.nan,
    )


def measurement_frames(train: np.ndarray, count: int = FRAMES) -> np.ndarray:
    """-> [min(count, T)] training frames spread evenly over `train` [T]."""
    if len(train) == 0:
        return np.zeros(0, np.int64)
    rows = np.unique(np.linspace(0, len(train) - 1, min(count, len(train))).round().astype(np.int64))
    return np.asarray(train)[rows]


def cached_opening_transfer(
    path: Path, checkpoint_step: int, measure: Callable[[], OpeningTransfer]
) -> OpeningTransfer:
    """The transfer kept at `path` if it was measured on `checkpoint_step`, else `measure()`, kept there
    (`avatar.runs.checkpoint_measurement`)."""
    return cached_measurement(path, OpeningTransfer.read, checkpoint_step, measure)
