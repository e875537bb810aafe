"""The phonetic mouth: new speech whose learned mouth misses its phones gets a share of the mouth its phones call
for, on the person's own opening."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar.audio.phones import PhoneSegment
from avatar.drive.phone_check import inner_lip_gap
from avatar.drive.phonetic_mouth import (
    DISTRUSTED_AUC,
    FULL_SHARE,
    TRUSTED_AUC,
    MouthOpening,
    blend_phonetic,
    phone_opening,
    phonetic_share,
)
from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.metrics.lipsync import lip_sync_score
from avatar.model.deformation import FACING_LIP_ROWS

FPS = 25.0
J = len(MOUTH_AND_JAW)


def _syllables(count: int) -> list[PhoneSegment]:
    """Silence, then `count` of "ba ma pa ..." syllables: a 0.12 s closure and a 0.2 s open vowel each."""
    phones, t = [PhoneSegment("SIL", 0.0, 0.4)], 0.4
    for k in range(count):
        phones.append(PhoneSegment("BMP"[k % 3], t, t + 0.12))
        phones.append(PhoneSegment(("AA", "AE", "AH")[k % 3], t + 0.12, t + 0.32))
        t += 0.32
    phones.append(PhoneSegment("SIL", t, t + 0.4))
    return phones


def _opening_mode() -> np.ndarray:
    """[J, 3] a mouth that opens: the lower inner lip down by 0.6 and the upper up by 0.4 of the gap, the rest of
    the lower face down by 0.3 (y grows downwards), with a little forward motion."""
    mode = np.zeros((J, 3), np.float32)
    mode[:, 1] = 0.3
    mode[:, 2] = 0.05
    upper, lower = FACING_LIP_ROWS
    mode[upper, 1] = -0.4
    mode[lower, 1] = 0.6
    return mode


def test_the_phones_open_the_mouth_on_open_vowels_and_shut_it_on_bilabials():
    phones = _syllables(10)
    count = int(phones[-1].end_s * FPS)
    opening = phone_opening(phones, count, FPS)
    assert opening.shape == (count,) and opening.dtype == np.float32
    assert np.all((opening >= 0) & (opening <= 1))
    assert np.all(opening[: int(0.3 * FPS)] < 0.02)  # the silence before speech
    for segment in phones[1:-1]:
        middle = int((segment.start_s + segment.end_s) / 2 * FPS)
        if segment.phone in "BMP":
            assert opening[middle] == 0.0  # the lips shut, whatever the vowels around
        else:
            assert opening[middle] > 0.5
    assert not phone_opening([], 20, FPS).any() and phone_opening(phones, 0, FPS).shape == (0,)
    # a phone outside ARPAbet (pocketsphinx's noise) opens nothing
    assert not phone_opening([PhoneSegment("+NSN+", 0.0, 1.0)], 25, FPS).any()


def test_the_persons_opening_is_measured_from_the_tracked_motion_alone():
    rng = np.random.default_rng(0)
    mode = _opening_mode()
    gap = rng.uniform(0.0, 0.012, 300)  # metres
    rest = rng.normal(0, 0.01, (J, 3))
    other = rng.normal(0, 1, (J, 3))
    other[:, 1] = 0  # motion that is not the opening (the corners widening) and does not change the gap
    tracked = rest + gap[:, None, None] * mode + rng.normal(0, 0.0005, 300)[:, None, None] * other
    speech = np.arange(0, 300, 2)
    person = MouthOpening.from_tracking(tracked, speech)
    np.testing.assert_allclose(inner_lip_gap(person.mode[None])[0], 1.0, atol=1e-4)  # metres per metre of gap
    np.testing.assert_allclose(person.mode, mode, atol=0.05)
    assert person.gap_spread == pytest.approx(np.std(gap[speech]), rel=1e-3)
    still = MouthOpening.from_tracking(np.repeat(rest[None], 10, 0), np.arange(10))
    assert still.gap_spread == 0 and not still.mode.any()


def test_the_share_grows_as_the_learned_mouth_follows_the_phones_less():
    assert phonetic_share(1.0) == phonetic_share(TRUSTED_AUC) == 0.0
    assert phonetic_share(DISTRUSTED_AUC) == phonetic_share(0.3) == FULL_SHARE
    middle = (TRUSTED_AUC + DISTRUSTED_AUC) / 2
    assert phonetic_share(middle) == pytest.approx(FULL_SHARE / 2)
    assert phonetic_share(math.nan) == 0.0  # nothing to judge the learned mouth by


def _blend(learned_gap: np.ndarray, phones, person, rest, person_scale: float = 1.0):
    learned = rest[None] + learned_gap[:, None, None] * person.mode[None]
    speech = np.flatnonzero(phone_opening(phones, len(learned_gap), FPS) > 0.05)
    motion, blend = blend_phonetic(
        learned.astype(np.float32), phones, FPS, rest, person, speech, person_scale
    )
    return learned, motion, blend, speech


def test_a_learned_mouth_that_follows_the_phones_is_rendered_as_learned():
    phones = _syllables(12)
    count = int(phones[-1].end_s * FPS)
    person = MouthOpening(_opening_mode(), 0.004)
    rest = np.zeros((J, 3), np.float32)
    follows = 0.01 * phone_opening(phones, count, FPS)
    learned, motion, blend, _ = _blend(follows, phones, person, rest)
    assert blend.share == 0.0 and blend.learned_auc >= TRUSTED_AUC
    np.testing.assert_array_equal(motion, learned.astype(np.float32))
    assert "as learned" in blend.summary()


def test_a_learned_mouth_that_opens_on_the_closures_gets_the_phonetic_mouth():
    phones = _syllables(12)
    count = int(phones[-1].end_s * FPS)
    person = MouthOpening(_opening_mode(), 0.004)
    rest = np.zeros((J, 3), np.float32)
    opening = phone_opening(phones, count, FPS)
    reversed_mouth = 0.002 * (1.0 - opening)  # the Spanish avatar on English: shut on the vowels
    learned, motion, blend, speech = _blend(reversed_mouth, phones, person, rest)
    assert blend.learned_auc < DISTRUSTED_AUC and blend.share == FULL_SHARE
    assert "50% phonetic" in blend.summary()
    gap = inner_lip_gap(motion)
    assert lip_sync_score(gap, phones, FPS).auc_lag0 > 0.95  # now it opens on the vowels
    # at the full share the mean of the two moves as far as the wider, here the person's own opening
    assert np.std(gap[speech]) == pytest.approx(person.gap_spread, rel=1e-3)
    assert gap[opening == 0].mean() < 0.5 * gap[opening > 0.5].mean()  # the closures: the narrowest
    # the render scales the motion by the gain: the phonetic mouth comes in over it, and renders at the person's
    _, scaled, _, _ = _blend(reversed_mouth, phones, person, rest, person_scale=0.5)
    assert np.std(inner_lip_gap(scaled)[speech]) == pytest.approx(0.5 * person.gap_spread, rel=1e-3)
    # a learned mouth wider than the person's, but out of step, keeps its amplitude
    _, wide, wide_blend, _ = _blend(0.05 * (1.0 - opening), phones, person, rest)
    assert wide_blend.share == FULL_SHARE
    assert np.std(inner_lip_gap(wide)[speech]) == pytest.approx(np.std(0.05 * opening[speech]), rel=1e-3)


def test_a_person_whose_gap_never_varies_keeps_the_learned_mouth():
    phones = _syllables(12)
    count = int(phones[-1].end_s * FPS)
    rest = np.zeros((J, 3), np.float32)
    still = MouthOpening(np.zeros((J, 3), np.float32), 0.0)
    learned = rest[None] + np.random.default_rng(1).normal(0, 1e-3, (count, J, 3)).astype(np.float32)
    motion, blend = blend_phonetic(learned, phones, FPS, rest, still, np.arange(count))
    np.testing.assert_array_equal(motion, learned)
    assert blend.share == 0.0 and blend.learned_auc < TRUSTED_AUC  # noise does not follow the phones
    assert "never opened" in blend.summary()


def test_a_partial_share_moves_the_mouth_towards_the_persons_amplitude_in_proportion(monkeypatch):
    phones = _syllables(12)
    count = int(phones[-1].end_s * FPS)
    person = MouthOpening(_opening_mode(), 0.004)
    rest = np.zeros((J, 3), np.float32)
    opening = phone_opening(phones, count, FPS)
    monkeypatch.setattr("avatar.drive.phonetic_mouth.phonetic_share", lambda learned_auc: FULL_SHARE / 4)
    learned, motion, blend, speech = _blend(0.002 * (1.0 - opening), phones, person, rest)
    assert blend.share == FULL_SHARE / 4
    learned_spread = np.std(inner_lip_gap(learned)[speech])
    expected = learned_spread + (person.gap_spread - learned_spread) / 4
    assert np.std(inner_lip_gap(motion)[speech]) == pytest.approx(expected, rel=1e-3)
