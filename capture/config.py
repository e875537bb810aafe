"""Settings of `avatar capture`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import tyro


@dataclass
class CaptureConfig:
    """Turn a talking-head video into a tracked dataset directory."""

    video: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VIDEO")]
    """The input video (mp4/mov, H.264 or HEVC), e.g. recorded on a phone."""
    out: Path
    """The dataset directory to write (created; re-running on it finishes what is missing)."""
    audio: Path | None = None
    """Take the audio from this file instead of the video's own track."""
    fps: float = 25.0
    """Frame rate of the dataset; variable-rate videos are resampled to it."""
    size: int = 512
    """Side of the square head-and-shoulders crop, in pixels."""
    max_gap_seconds: float = 0.5
    """Gaps without a face up to this long are interpolated; longer ones are left out of training."""
    max_missing_fraction: float = 0.1
    """Fail when more than this fraction of frames have no face."""
    min_seconds: float = 3.0
    """Refuse clips shorter than this."""
    val_fraction: float = 0.1
    """The last part of the clip, this fraction of it, is held out for validation."""
    pose_smoothing_frames: float = 1.0
    """Gaussian sigma, in frames, of the zero-phase smoothing of head poses."""
    jpeg_quality: int = 95
    """Quality of the stored frames."""

    def settings(self) -> dict:
        """The settings that shape the dataset (a change means capturing again)."""
        data = asdict(self)
        for name in ("video", "out", "audio", "min_seconds", "max_missing_fraction"):
            data.pop(name)
        return data
