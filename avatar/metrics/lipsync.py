"""A lip-sync score from the phones of the driving audio: is the mouth open on open vowels and shut on p/b/m?

Two groups of video frames are read off a phone alignment (e.g. `avatar.audio.phones.align_phones`):
*open* frames, whose centre lies in an open vowel (`OPEN_VOWELS`, at least `min_vowel_s` long, so that
reduced vowels the lips skip are left out), and *closed* frames, whose centre lies in a bilabial closure
(`CLOSURES`: the lips must touch to say p, b or m). A mouth that follows the sound is wider on the first than
on the second. The score is the AUC of that separation: the probability that an open frame's mouth opening is
larger than a closed frame's (Mann-Whitney U over n_open * n_closed, ties counted 1/2). 1 is perfect, 0.5 is a
mouth that ignores the sound, below 0.5 a mouth that moves against it.

The mouth opening is any per-frame measure that grows as the lips part, e.g. `landmarks.mouth_opening` of each
frame's face mesh; only its order matters, so it needs no calibration between speakers or renderers, and
`spread_ratio` says separately how much a rendered mouth moves compared with the real one.

Lag: the mouth is read `lag` frames after the phone (the mouth of frame i + lag for a phone at frame i), so a
negative best lag is a mouth that moves ahead of its audio (lips open before the vowel sounds, and videos often
carry an audio delay). `lip_sync_score` reports the AUC at lag 0 and at the best lag in [-max_lag, max_lag];
the best of several lags is biased upwards, so compare the AUC at a known lag where there is one. On a 20 s
clip (about 55 open and 20 closed frames) a mouth that ignores the sound scores 0.50 +- 0.09 at a fixed lag and
0.61 +- 0.07 (up to 0.70) at the best of 17 lags; a real mouth against its own audio 0.9 or more.

This module is pure numpy and takes the phones as any objects with `phone`, `start_s` and `end_s` attributes
(the `PhoneLike` protocol): `avatar.audio.phones.PhoneSegment` fits, and metrics does not import audio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

OPEN_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "EY")
CLOSURES = ("P", "B", "M")


class PhoneLike(Protocol):
    """A phone and its span in seconds: ARPAbet, stress digits and case ignored (e.g. "AA", "aa1")."""

    @property
    def phone(self) -> str: ...

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...


@dataclass(frozen=True)
class LipSyncScore:
    """How well a mouth follows the phones of its audio (see the module docstring)."""

    auc_lag0: float  # AUC with each frame's mouth read at its own phone; NaN if a group is empty
    best_lag: int  # the lag in [-max_lag, max_lag] with the highest AUC (the smallest |lag| among ties)
    auc_best_lag: float  # the AUC at best_lag
    open_frames: int  # frames in an open vowel
    closed_frames: int  # frames in a p/b/m closure
    mouth_spread: float  # NaN-std of the mouth opening over all frames
    lags: np.ndarray  # [L] int, -max_lag..max_lag
    auc_by_lag: np.ndarray  # [L] float64, the AUC at each lag
    viseme: np.ndarray  # [F] int8: +1 on open-vowel frames, -1 on closure frames, 0 elsewhere (for a plot)
    mouth_opening: np.ndarray  # [F] float64, the opening the score was computed on (NaN where unknown)


def viseme_frames(
    phones: Sequence[PhoneLike], num_frames: int, fps: float, *, min_vowel_s: float = 0.06
) -> tuple[np.ndarray, np.ndarray]:
    """The frames whose centre, (i + 0.5) / fps seconds, lies in an open vowel at least min_vowel_s long, and
    those whose centre lies in a p/b/m. Spans are half-open, [start_s, end_s); a frame in both (overlapping
    phones) is in neither.

    Returns:
        open_frames: np.ndarray  # [n_open] int64, ascending
        closed_frames: np.ndarray  # [n_closed] int64, ascending
    """
    if num_frames < 0 or fps <= 0:
        raise ValueError(f"need num_frames >= 0 and fps > 0, got {num_frames} and {fps}")
    centres = (np.arange(num_frames) + 0.5) / fps
    is_open = np.zeros(num_frames, bool)
    is_closed = np.zeros(num_frames, bool)
    for segment in phones:
        name = _phone_name(segment.phone)
        start_s, end_s = float(segment.start_s), float(segment.end_s)
        if name in OPEN_VOWELS and end_s - start_s >= min_vowel_s:
            target = is_open
        elif name in CLOSURES:
            target = is_closed
        else:
            continue
        lo, hi = np.searchsorted(centres, [start_s, end_s], side="left")
        target[lo:hi] = True
    both = is_open & is_closed
    return np.flatnonzero(is_open & ~both), np.flatnonzero(is_closed & ~both)


def viseme_auc(
    mouth_opening: np.ndarray, open_frames: np.ndarray, closed_frames: np.ndarray, *, lag: int = 0
) -> float:
    """The probability that the mouth is wider on an open-vowel frame than on a closure frame.

    The mouth of phone frame i is read at frame i + lag; frames that land outside [0, F) or on a NaN opening
    are dropped. Ties count 1/2 (Mann-Whitney U / (n_open * n_closed)).

    Args:
        mouth_opening: np.ndarray  # [F] per-frame opening, larger = more open
        open_frames: np.ndarray  # [n_open] int frame indices (`viseme_frames`)
        closed_frames: np.ndarray  # [n_closed] int frame indices
    Returns:
        auc in [0, 1]; NaN when either group is empty after dropping.
    """
    opening = np.asarray(mouth_opening, dtype=np.float64)
    if opening.ndim != 1:
        raise ValueError(f"expected a [F] mouth opening, got shape {opening.shape}")
    open_values = _read(opening, open_frames, lag)
    closed_values = np.sort(_read(opening, closed_frames, lag))
    if len(open_values) == 0 or len(closed_values) == 0:
        return math.nan
    below = np.searchsorted(closed_values, open_values, side="left")
    at_or_below = np.searchsorted(closed_values, open_values, side="right")
    wins = below.sum() + 0.5 * (at_or_below - below).sum()
    return float(wins / (len(open_values) * len(closed_values)))


def lip_sync_score(
    mouth_opening: np.ndarray,
    phones: Sequence[PhoneLike],
    fps: float,
    *,
    max_lag: int = 8,
    min_vowel_s: float = 0.06,
) -> LipSyncScore:
    """The viseme AUC of a mouth against the phones of its audio at lag 0 and at the best lag in
    [-max_lag, max_lag].

    Args:
        mouth_opening: np.ndarray  # [F] per-frame opening of frames 0..F-1 at `fps`, NaN where unknown
        phones: the audio's phones, times in seconds from frame 0's start
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    opening = np.asarray(mouth_opening, dtype=np.float64)
    if opening.ndim != 1:
        raise ValueError(f"expected a [F] mouth opening, got shape {opening.shape}")
    open_frames, closed_frames = viseme_frames(phones, len(opening), fps, min_vowel_s=min_vowel_s)
    lags = np.arange(-max_lag, max_lag + 1)
    aucs = np.array([viseme_auc(opening, open_frames, closed_frames, lag=int(lag)) for lag in lags])
    if np.isfinite(aucs).any():
        order = np.lexsort(
            (np.abs(lags), -np.nan_to_num(aucs, nan=-np.inf))
        )  # highest AUC, then smallest |lag|
        best = int(order[0])
    else:
        best = max_lag  # lag 0
    viseme = np.zeros(len(opening), np.int8)
    viseme[open_frames] = 1
    viseme[closed_frames] = -1
    finite = opening[np.isfinite(opening)]
    return LipSyncScore(
        auc_lag0=float(aucs[max_lag]),
        best_lag=int(lags[best]),
        auc_best_lag=float(aucs[best]),
        open_frames=len(open_frames),
        closed_frames=len(closed_frames),
        mouth_spread=float(finite.std()) if len(finite) else math.nan,
        lags=lags,
        auc_by_lag=aucs,
        viseme=viseme,
        mouth_opening=opening,
    )


def spread_ratio(rendered_opening: np.ndarray, real_opening: np.ndarray) -> float:
    """NaN-std of a rendered mouth's opening over that of the real one: about 1 when the rendered mouth moves
    as much as the real one, near 0 for a mouth that barely moves (which can still order open above closed).
    NaN when the real opening has no spread or either has no finite value.

    Args:
        rendered_opening: np.ndarray  # [F] (any length; only the spread of each is compared)
        real_opening: np.ndarray  # [F']
    """
    rendered = np.asarray(rendered_opening, dtype=np.float64)
    real = np.asarray(real_opening, dtype=np.float64)
    rendered, real = rendered[np.isfinite(rendered)], real[np.isfinite(real)]
    if len(rendered) == 0 or len(real) == 0:
        return math.nan
    real_std = float(real.std())
    return float(rendered.std()) / real_std if real_std > 0 else math.nan


def _phone_name(phone: str) -> str:
    return phone.strip().upper().rstrip("012")


def _read(opening: np.ndarray, frames: np.ndarray, lag: int) -> np.ndarray:
    """opening[frames + lag] over the indices inside [0, F) where it is not NaN."""
    index = np.asarray(frames, dtype=np.int64) + lag
    values = opening[index[(index >= 0) & (index < len(opening))]]
    return values[~np.isnan(values)]
