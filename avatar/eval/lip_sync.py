"""Lip-sync scores of `avatar eval`: a mouth (rendered or real) against the phones of the audio it speaks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar.audio.phones import AlignedSpeech
from avatar.eval.plots import line_plot_png
from avatar.metrics.lipsync import LipSyncScore, lip_sync_score, spread_ratio


@dataclass(frozen=True)
class LipSyncSummary:
    """The scalar part of a `LipSyncScore` (avatar.metrics.lipsync), with the spread against a real mouth."""

    auc_lag0: float  # P(an open-vowel frame's mouth is wider than a p/b/m frame's); 0.5: the mouth ignores it
    best_lag: int  # frames; negative: the mouth moves ahead of the sound
    auc_best_lag: float
    open_frames: int
    closed_frames: int
    mouth_spread: float  # std of the mouth opening (inner-lip gap / mouth width)
    spread_ratio: float | None  # mouth_spread over the real mouth's, when one is compared


def summarize(score: LipSyncScore, real_opening: np.ndarray | None = None) -> LipSyncSummary:
    def finite(value: float) -> float:
        return round(float(value), 4) if math.isfinite(value) else math.nan

    ratio = None if real_opening is None else finite(spread_ratio(score.mouth_opening, real_opening))
    return LipSyncSummary(
        auc_lag0=finite(score.auc_lag0),
        best_lag=int(score.best_lag),
        auc_best_lag=finite(score.auc_best_lag),
        open_frames=int(score.open_frames),
        closed_frames=int(score.closed_frames),
        mouth_spread=finite(score.mouth_spread),
        spread_ratio=ratio,
    )


def score(
    opening: np.ndarray, speech: AlignedSpeech, fps: float, *, first_frame: int = 0
) -> LipSyncScore | None:
    """The lip-sync score of the mouth opening [F] of frames first_frame.. against `speech`, or None."""
    if speech.phones is None:
        return None
    return lip_sync_score(opening, speech.from_frame(first_frame, fps), fps)


def auc_text(auc_lag0: float, auc_best_lag: float, best_lag: int, *, digits: int = 3) -> str:
    """The AUCs of a lip-sync score in words: "viseme AUC 0.912 at lag 0, 0.950 at lag +1", or why there is
    none (a score needs open-vowel and closure frames, which two seconds of held-out speech may lack)."""
    if math.isnan(auc_best_lag):  # a group was empty at every lag
        return "no viseme AUC: it needs both open-vowel and closure frames"
    return f"viseme AUC {auc_lag0:.{digits}f} at lag 0, {auc_best_lag:.{digits}f} at lag {best_lag:+d}"


def lip_sync_plot(path: Path, score: LipSyncScore, fps: float, title: str) -> None:
    """The mouth opening over time with the open vowels (+) and p/b/m closures (-) marked below it."""
    opening = score.mouth_opening
    level = float(np.nanmin(opening)) if np.isfinite(opening).any() else 0.0
    span = float(np.nanmax(opening) - level) if np.isfinite(opening).any() else 1.0
    markers = np.where(score.viseme != 0, level - 0.15 * span + 0.1 * span * score.viseme, np.nan)
    line_plot_png(
        path,
        {"mouth opening": opening, "open vowel (up) / p b m closure (down)": markers},
        x=np.arange(len(opening)) / fps,
        title=f"{title}: {auc_text(score.auc_lag0, score.auc_best_lag, score.best_lag, digits=2)}",
        xlabel="time (s)",
        ylabel="inner-lip gap / mouth width",
    )
