"""Whether a run hears its capture's phones: do they tell the person's held-out mouth what to do?

The phones come from pocketsphinx's English recogniser (avatar/audio/phones.py). On a capture in another language
it forces English words onto the sounds, and a fit of a few hundred frames learns each training frame's mouth
from phones that carry no articulation it can carry over: on frames it has not seen, the mouth follows the wrong
phones. A clip played backwards, picture and sound, is a real voice in no language the recogniser knows; on two
such clips (tiny preset) `avatar eval`'s held-out mouth-opening correlation was

| capture | with the phones | the phone channels zeroed |
| --- | --- | --- |
| phone_talker_20s backwards | -0.14 | 0.61 |
| obama_address_20s backwards | 0.24 | 0.73 |

while on English captures the phones cost the held-out frames little or nothing. The phones are what carries English
speech of another voice to the mouth (issue 9's viseme scores), so they are kept unless they fail:

after a fit, on its first use, the motion path predicts the capture's held-out frames twice (no rendering, a
few seconds): with the capture's phones and with the phone channels zeroed, the voice alone, which the fit
trains for (`TrainSettings.phone_dropout`). Each prediction's inner-lip gap is correlated with the tracked one.
When the phones lose by more than `MARGIN`, the capture's own frames are driven by the voice alone. Measured so
(held-out, phones minus voice alone): 8 English fits of phone_talker, Obama and the built-in sample
-0.08 .. +0.01, one more +0.09; the two backwards clips -0.23 - 0.62 and 0.48 - 0.82. The check is kept beside
its checkpoint (`phone_check.json`).

Between the two, where the voice alone predicts the held-out mouth better but by no more than `MARGIN`, the
capture's own frames are driven by the mean of the two predictions (`PhoneCheck.capture_phone_weight`): the check
cannot tell which is right, and the mean of two partly independent predictions errs less than either (what the
mean takes off the amplitude, the articulation gain makes good: avatar/drive/articulation.py). `avatar eval`'s
held-out mouth-opening correlation of fits whose check fell there (tiny preset; phones -> the mean): a 20 s
Spanish capture (0.71 / 0.78 in the check) 0.636 -> 0.747, phone_talker (0.78 / 0.87) 0.806 -> 0.805, Obama
(0.84 / 0.87) 0.857 -> 0.869.

New audio is another matter: it may be in the capture's language, whose phones mislead, or in English, whose
phones the fit still learned to follow. So on a run whose check failed, new audio's mouth motion is the mean of
the motion predicted with its phones and with its voice alone (`FittedHead.new_audio_signals`). The motion path
trained as the fit trains it (2 seeds, each backwards clip; viseme AUC at lag 0, scored for backwards speech
against its forward alignment reversed):

| avatar, new audio | phones | voice alone | mean |
| --- | --- | --- | --- |
| phone_talker backwards, English (LJ001, obama_speech_24s) | 0.87 .. 0.94 | 0.67 .. 0.88 | 0.84 .. 0.93 |
| phone_talker backwards, backwards speech | 0.72 .. 0.81 | 0.66 .. 0.84 | 0.73 .. 0.84 |
| Obama backwards, English | 0.78 .. 0.81 | 0.83 .. 0.90 | 0.84 .. 0.87 |
| Obama backwards, backwards speech | 0.72 .. 0.83 | 0.83 .. 0.91 | 0.82 .. 0.97 |

Rendered and scored by `avatar eval --audio` (the two backwards fits, voice alone -> mean): phone_talker on
LJ001 0.73 -> 0.88, on obama_speech_24s 0.88 -> 0.91; Obama 0.81 -> 0.77 and 0.73 -> 0.75.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from avatar.core.records import Record
from avatar.model.deformation import FACING_LIP_ROWS
from avatar.runs.checkpoint_measurement import cached_measurement

MARGIN = 0.15  # how much better the voice alone must predict the held-out mouth to turn the phones off
MIN_FRAMES = 20  # fewer held-out frames: not enough to judge, the phones stay on
HALF = 0.5  # the phones' share of the capture's own mouth motion where the voice alone is better by <= MARGIN


@dataclass(frozen=True)
class PhoneCheck(Record):
    """How well a checkpoint's motion path predicts the held-out mouth with and without the capture's phones."""

    FORMAT: ClassVar[str] = "splat-avatar-phone-check"
    VERSION: ClassVar[int] = 1

    checkpoint_step: int  # of the checkpoint measured
    frames: int  # held-out frames compared
    correlation_with_phones: float  # of the predicted inner-lip gap with the tracked one; NaN: not measurable
    correlation_without_phones: float

    @property
    def uses_phones(self) -> bool:
        """False only when there are enough frames and the voice alone beats the phones by more than MARGIN."""
        with_phones, without = self.correlation_with_phones, self.correlation_without_phones
        if self.frames < MIN_FRAMES or not (math.isfinite(with_phones) and math.isfinite(without)):
            return True
        return without - with_phones <= MARGIN

    @property
    def capture_phone_weight(self) -> float:
        """The share of the capture's own mouth motion predicted with its phones, the rest with its voice alone:
        1 where the phones predict the held-out mouth at least as well (or the check cannot judge), 0 where they
        are off (`uses_phones`), `HALF` between."""
        if not self.uses_phones:
            return 0.0
        if self.frames < MIN_FRAMES or not self.correlation_without_phones > self.correlation_with_phones:
            return 1.0
        return HALF

    def summary(self) -> str:
        """One line for a person: what the run hears and why."""
        measured = (
            f"held-out mouth correlation {self.correlation_with_phones:.2f} with the capture's phones, "
            f"{self.correlation_without_phones:.2f} without, {self.frames} frames"
        )
        if self.capture_phone_weight == HALF:
            return (
                f"phones: heard; the capture's own frames move half by them, half by the voice ({measured})"
            )
        if self.uses_phones:
            return f"phones: heard ({measured})"
        return (
            "phones: the capture's are off, pocketsphinx's English phones of it do not predict its mouth (another "
            f"language?; {measured}); its own frames hear the voice alone, new audio its phones and its voice, "
            "half each"
        )


def inner_lip_gap(motion: np.ndarray) -> np.ndarray:
    """[F, J, 3] mouth motion (`avatar.face.landmarks.MOUTH_AND_JAW` rows) -> [F] how far the facing inner-lip
    landmarks move apart vertically, averaged over the pairs between the corners."""
    upper, lower = FACING_LIP_ROWS
    return (motion[:, lower, 1] - motion[:, upper, 1]).mean(axis=1)


def measure_phone_check(
    predicted_motion: Callable[[bool], np.ndarray],
    tracked_motion: np.ndarray,
    frames: np.ndarray,
    checkpoint_step: int,
) -> PhoneCheck:
    """Correlates the held-out inner-lip gap the motion path predicts with and without phones with the tracked one.

    Args:
        predicted_motion: with_phones -> [F, J, 3] the motion predicted for every frame of the capture
        tracked_motion: np.ndarray  # [F, J, 3] the capture's tracked mouth motion
        frames: np.ndarray  # [V] the held-out frames with a tracked face
    """
    real = inner_lip_gap(tracked_motion)[frames]

    def correlation(with_phones: bool) -> float:
        predicted = inner_lip_gap(predicted_motion(with_phones))[frames]
        if len(frames) < 2 or not (np.std(predicted) > 0 and np.std(real) > 0):
            return math.nan
        return float(np.corrcoef(predicted, real)[0, 1])

    return PhoneCheck(
        checkpoint_step=checkpoint_step,
        frames=len(frames),
        correlation_with_phones=correlation(True),
        correlation_without_phones=correlation(False),
    )


def cached_phone_check(path: Path, checkpoint_step: int, measure: Callable[[], PhoneCheck]) -> PhoneCheck:
    """The check kept at `path` if it was made on `checkpoint_step`, else `measure()`, kept there."""
    return cached_measurement(path, PhoneCheck.read, checkpoint_step, measure)
