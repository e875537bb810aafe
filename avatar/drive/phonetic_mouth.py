"""A phonetic mouth for new speech that the learned mouth does not follow.

The audio -> mouth-motion path learns one person's mouth from a few hundred frames of their voice. Where that
voice speaks another language than the aligner's English, or the driving voice is far from it, the learned
mouth can miss the words: a 20 s Spanish capture's avatar, driven by English speech, opened its mouth on the
p, b and m closures as often as on the open vowels (`avatar eval --audio`, viseme AUC at lag 0 of 0.32-0.55 on
LJ001 and 0.65-0.74 on obama_speech_24s over three fits, its mouth below 0.03 open on half the frames).

What a phone does to the mouth does not need learning: the jaw opens wide for AA and barely for IY, and the
lips shut for P, B and M in every voice (`avatar.audio.phone_features`). Only how this person's mouth opens has
to come from the capture, and that is measured without any phone (`MouthOpening`): the tracked motion that goes
with one metre of inner-lip gap, and how far the gap varies while they speak.

A driven clip's phones are known (pocketsphinx aligns them), so the learned mouth is checked against them
before it is rendered: the viseme AUC at lag 0 of its inner-lip gap (`avatar.metrics.lipsync`). A mouth that
follows the phones (AUC at least `TRUSTED_AUC`) is rendered as learned; one that does not gets a share of the
phonetic mouth, up to `FULL_SHARE` at `DISTRUSTED_AUC` and below (`phonetic_share`). The learned mouth keeps
the rest, and with it what the voice says beyond the phones.

Measured (tiny preset, `avatar eval RUN --audio A`; viseme AUC at lag 0 and the mouth's spread against the
real clip's; three fits of the Spanish capture, learned -> with the phonetic share, which was the full one in
all six):

| audio | viseme AUC | spread |
| --- | --- | --- |
| LJ001 | 0.48 / 0.32 / 0.55 -> 1.00 / 0.96 / 0.99 | 0.56 / 0.60 / 0.54 -> 0.94 / 0.92 / 0.83 |
| obama_speech_24s | 0.74 / 0.65 / 0.69 -> 0.98 / 0.98 / 0.98 | 0.55 / 0.59 / 0.49 -> 0.89 / 0.89 / 0.81 |

The AUC above is partly the score's own reflection: the phonetic mouth is drawn from the alignment it is
scored against. Scores that are not:
- speech played backwards (a real voice in no language; the aligner forces English words onto it), scored
  against its forward alignment reversed with `avatar eval --phones`: the Spanish avatar on LJ001 0.69 -> 0.78
  (share 0.18), on obama_speech_24s 0.46 -> 0.70 (0.5);
- speech in six other languages (German, French, Japanese, Russian, two Chinese), against a measure that uses
  no phone: how the mouth's inner-lip gap goes with the loudness and first formant of the sound. The Spanish
  avatar's learned mouth went with them at r -0.20 .. 0.17, with its share (0.06-0.5) at 0.04 .. 0.33; the
  phone_talker avatar's scored 0.85-1.0 against the forced phones (shares 0-0.16), r 0.04 .. 0.20 -> 0.04 .. 0.26.

On the English captures the learned mouth scores 0.89-0.97 against English speech's phones (Obama on LJ001 and
obama_speech_24s, phone_talker on both, a 60 s clip on LJ001), so they render as before but for a 3 % share on
Obama's obama_speech_24s (0.909 -> 0.912, spread 0.94 both). Avatars of the Obama and phone_talker clips played
backwards (captures in no language) got shares of 0.11-0.37 on the two English clips: 0.72 -> 0.98 and 0.75 ->
0.91 (Obama), 0.88 -> 0.99 and 0.90 -> 0.96 (phone_talker), each spread a little wider. The held-out frames
of a capture are driven as the fit trained them (`FittedHead.capture_driving`), not this way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from avatar.audio.phone_features import ARTICULATORY_FEATURES, articulatory_table
from avatar.audio.phones import ARPABET, PhoneSegment
from avatar.drive.phone_check import inner_lip_gap
from avatar.metrics.lipsync import lip_sync_score

FULL_SHARE = 0.5  # of the mouth motion that is phonetic where the learned mouth does not follow the phones
TRUSTED_AUC = 0.9  # a learned mouth scoring at least this against its audio's phones is rendered as learned
DISTRUSTED_AUC = 0.75  # at or below this, the full share
SAMPLES_PER_FRAME = 4  # points of each frame's span at which the phone is read
SMOOTHING_SECONDS = 0.04  # standard deviation of the Gaussian the opening is smoothed with (coarticulation)
CLOSURE_SHARE = 0.5  # a frame with at least this share of its span in a p, b or m shows the lips shut
STILL_GAP_M = 1e-9  # a gap varying less than this (standard deviation, metres) does not vary


@dataclass(frozen=True)
class MouthOpening:
    """How a person's mouth opens, from their tracked motion alone (no phones)."""

    mode: np.ndarray  # [J, 3] metres of mouth motion per metre of inner-lip gap
    gap_spread: float  # metres: standard deviation of the inner-lip gap over the capture's speech frames

    @classmethod
    def from_tracking(cls, tracked: np.ndarray, speech_frames: np.ndarray) -> MouthOpening:
        """The least-squares slope of the tracked motion on its inner-lip gap (`inner_lip_gap`) over
        `speech_frames`, and the gap's spread there; a zero mode where the gap does not vary (`STILL_GAP_M`).

        Args:
            tracked: np.ndarray  # [F, J, 3] tracked mouth motion (`MOUTH_AND_JAW` rows)
            speech_frames: np.ndarray  # [T] the training frames with speech
        """
        motion = np.asarray(tracked, np.float64)[np.asarray(speech_frames)]
        gap = inner_lip_gap(motion)
        gap = gap - gap.mean() if len(gap) else gap
        spread = float(gap @ gap)
        if spread <= len(gap) * STILL_GAP_M**2:
            return cls(np.zeros(tracked.shape[1:], np.float32), 0.0)
        slope = np.einsum("f,fjc->jc", gap, motion - motion.mean(axis=0)) / spread
        return cls(slope.astype(np.float32), float(np.sqrt(spread / len(gap))))


@dataclass(frozen=True)
class PhoneticBlend:
    """How much of a driven clip's mouth is phonetic, and why."""

    learned_auc: float  # viseme AUC at lag 0 of the learned mouth against the audio's phones; NaN: unscorable
    share: float  # of the mouth motion that is phonetic

    def summary(self) -> str:
        if self.share == 0:
            if math.isnan(self.learned_auc):
                return "mouth as learned (its phones have too few open vowels or closures to check it)"
            if self.learned_auc < TRUSTED_AUC:  # the capture's gap never varied: no opening of its own to add
                return (
                    f"mouth as learned (viseme AUC {self.learned_auc:.2f}; the capture's mouth never opened)"
                )
            return f"mouth as learned (it follows the audio's phones: viseme AUC {self.learned_auc:.2f})"
        return (
            f"mouth {self.share:.0%} phonetic: the learned mouth follows the audio's phones too little "
            f"(viseme AUC {self.learned_auc:.2f})"
        )


def phonetic_share(learned_auc: float) -> float:
    """The phonetic share of a clip whose learned mouth scores `learned_auc` against its phones: 0 at and above
    `TRUSTED_AUC`, `FULL_SHARE` at and below `DISTRUSTED_AUC`, linear between; 0 when unscorable (NaN)."""
    if not math.isfinite(learned_auc):
        return 0.0
    doubt = (TRUSTED_AUC - learned_auc) / (TRUSTED_AUC - DISTRUSTED_AUC)
    return FULL_SHARE * float(np.clip(doubt, 0.0, 1.0))


def phone_opening(phones: Sequence[PhoneSegment], num_frames: int, fps: float) -> np.ndarray:
    """[F] how far the phones open the mouth in each video frame, 0 (shut) .. 1 (widest).

    Frame i spans [i / fps, (i + 1) / fps); at `SAMPLES_PER_FRAME` points of it the phone spoken there gives its
    jaw opening (`phone_features`; 0 in silence and for phones outside ARPAbet). The frame's opening is their
    mean times one less the share of points inside a bilabial (p, b, m), smoothed over time
    (`SMOOTHING_SECONDS`); frames with at least `CLOSURE_SHARE` of their points in a bilabial are then shut,
    whatever their neighbours.
    """
    table = articulatory_table()
    jaw = table[:, ARTICULATORY_FEATURES.index("jaw_open")]
    shut = table[:, ARTICULATORY_FEATURES.index("lips_closed")]
    known = sorted((p for p in phones if p.phone in ARPABET), key=lambda p: p.start_s)
    if not known or num_frames < 1:
        return np.zeros(max(num_frames, 0), np.float32)
    starts = np.array([p.start_s for p in known])
    ends = np.array([p.end_s for p in known])
    rows = np.array([ARPABET.index(p.phone) for p in known])
    points = (np.arange(SAMPLES_PER_FRAME) + 0.5) / SAMPLES_PER_FRAME
    times = (np.arange(num_frames)[:, None] + points[None]) / fps  # [F, S]
    latest = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, None)  # the last phone begun
    spoken = (times >= starts[latest]) & (times < ends[latest])
    opening = np.where(spoken, jaw[rows[latest]], 0.0).mean(axis=1)
    closure = np.where(spoken, shut[rows[latest]], 0.0).mean(axis=1)
    opening = opening * (1 - closure)
    if num_frames > 1:
        opening = gaussian_filter1d(opening, SMOOTHING_SECONDS * fps, mode="nearest")
    opening[closure >= CLOSURE_SHARE] = 0.0
    return opening.astype(np.float32)


def phonetic_motion(opening: np.ndarray, person: MouthOpening, speech_frames: np.ndarray) -> np.ndarray:
    """[F, J, 3] the phonetic mouth's motion about rest: the person's opening mode moved by `opening` [F]
    (`phone_opening`), scaled so that its inner-lip gap varies over the clip's `speech_frames` as the person's
    does (`MouthOpening.gap_spread`); zero throughout when the opening does not vary there."""
    spread = float(np.std(opening[speech_frames])) if len(speech_frames) else 0.0
    scale = person.gap_spread / spread if spread > 0 else 0.0
    return (opening * scale)[:, None, None] * person.mode[None]


def blend_phonetic(
    learned: np.ndarray,
    phones: Sequence[PhoneSegment],
    fps: float,
    rest: np.ndarray,
    person: MouthOpening,
    speech_frames: np.ndarray,
    person_scale: float = 1.0,
) -> tuple[np.ndarray, PhoneticBlend]:
    """The mouth motion to render a driven clip with: the learned motion, with the phonetic mouth's share where
    the learned one does not follow the clip's phones (module docstring).

    The render scales the motion about `rest` by the articulation gain, which matches the learned motion's
    amplitude to the person's; the phonetic mouth is at the person's amplitude already, so it is given here
    times `person_scale` (one over that gain, without its opening-transfer correction) and renders at theirs.
    Two motions that do not move together move less in their mean than either alone: the blend's inner-lip gap
    is brought to vary over `speech_frames` as far as the learned one's, or towards the person's where that is
    wider, in proportion to the share (all the way at `FULL_SHARE`).

    Args:
        learned: np.ndarray  # [F, J, 3] the learned mouth motion (`clip_motion`)
        phones: the clip's phones, times from frame 0's start
        rest: np.ndarray  # [J, 3] the mouth of silence, which the render scales the motion about
        speech_frames: np.ndarray  # [S] the clip's frames with speech
        person_scale: float  # what the person's own amplitude is multiplied by in the returned motion
    Returns:
        motion: np.ndarray  # [F, J, 3]
        blend: PhoneticBlend
    """
    learned_auc = float(lip_sync_score(inner_lip_gap(learned), phones, fps).auc_lag0)
    share = phonetic_share(learned_auc) if person.gap_spread > 0 and len(speech_frames) > 1 else 0.0
    if share == 0:
        return learned, PhoneticBlend(learned_auc, 0.0)
    opening = phone_opening(phones, len(learned), fps)
    phonetic = phonetic_motion(opening, person, speech_frames) * person_scale
    learned_motion = learned - rest[None]
    motion = (1 - share) * learned_motion + share * phonetic

    def gap_spread(deviation: np.ndarray) -> float:
        return float(np.std(inner_lip_gap(deviation[speech_frames])))

    learned_spread, blended = gap_spread(learned_motion), gap_spread(motion)
    target = learned_spread + share / FULL_SHARE * max(gap_spread(phonetic) - learned_spread, 0.0)
    if blended > 0:
        motion *= target / blended
    return (rest[None] + motion).astype(learned.dtype, copy=False), PhoneticBlend(learned_auc, share)
