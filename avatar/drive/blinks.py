"""The eye signal that drives a render: the capture's own blinks, none, or natural periodic blinks."""

from __future__ import annotations

from typing import Literal

import numpy as np

BlinkMode = Literal["capture", "none", "periodic"]
BLINK_SECONDS = 0.15  # a closure, lid down and up again
BLINK_INTERVAL_SECONDS = (3.0, 5.0)  # between blinks, drawn uniformly


def eye_levels(eye_openness: np.ndarray, blink: np.ndarray | None = None) -> tuple[float, float]:
    """A capture's eye openness [F] (and its blink frames [F] bool, when known) -> (open, closed): the median
    outside blinks, and the level of the blinks' closed frames (without known blinks: the 0.5th percentile)."""
    values = np.asarray(eye_openness, dtype=np.float64)
    blink = np.zeros(len(values), bool) if blink is None else np.asarray(blink, bool)
    finite = np.isfinite(values)
    if (finite & blink).any():
        return float(np.median(values[finite & ~blink])), float(np.percentile(values[finite & blink], 10))
    return float(np.median(values[finite])), float(np.percentile(values[finite], 0.5))


def periodic_blinks(
    count: int, fps: float, open_level: float, closed_level: float, seed: int = 0
) -> np.ndarray:
    """[count] eye openness at `open_level`, with a blink every 3 to 5 s (the first within 0.5 to 2.5 s): a
    raised-cosine dip to `closed_level` lasting BLINK_SECONDS."""
    rng = np.random.default_rng(seed)
    times = (np.arange(count) + 0.5) / fps
    signal = np.full(count, open_level, dtype=np.float64)
    centre = rng.uniform(0.5, 2.5)
    end = times[-1] + BLINK_SECONDS if count else 0.0
    while centre < end:
        phase = (times - centre) / (BLINK_SECONDS / 2)  # -1 .. 1 over the closure
        inside = np.abs(phase) < 1
        depth = 0.5 * (1 + np.cos(np.pi * phase[inside]))  # 1 at the centre, 0 at the edges
        signal[inside] = np.minimum(signal[inside], open_level - depth * (open_level - closed_level))
        centre += rng.uniform(*BLINK_INTERVAL_SECONDS)
    return signal


def eye_signal(
    mode: BlinkMode,
    capture_eye: np.ndarray,
    looped: np.ndarray,
    fps: float,
    *,
    capture_blink: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The eye openness of each rendered frame.

    Args:
        mode: "capture": the capture's own, looped with its poses; "none": eyes open throughout;
            "periodic": `periodic_blinks` at the capture's open and closed levels
        capture_eye: np.ndarray  # [F] the capture's eye openness (its levels); capture_blink [F] its blinks
        looped: np.ndarray  # [count] the capture's eye openness at the frames whose poses are rendered
    Returns:
        np.ndarray  # [count]
    """
    if mode == "capture":
        return np.asarray(looped, dtype=np.float64)
    open_level, closed_level = eye_levels(capture_eye, capture_blink)
    if mode == "none":
        return np.full(len(looped), open_level)
    if mode == "periodic":
        return periodic_blinks(len(looped), fps, open_level, closed_level, seed)
    raise ValueError(f"unknown blink mode {mode!r}; use capture, none or periodic")
