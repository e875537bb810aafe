"""The phone check: a run whose capture's phones do not predict its held-out mouth is driven by the voice alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar.core.errors import AvatarError
from avatar.drive.phone_check import (
    HALF,
    MARGIN,
    MIN_FRAMES,
    PhoneCheck,
    cached_phone_check,
    inner_lip_gap,
    measure_phone_check,
)
from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.model.deformation import INNER_LIP_LOWER_ROWS, INNER_LIP_UPPER_ROWS


def _check(with_phones: float, without: float, frames: int = 50, step: int = 10) -> PhoneCheck:
    return PhoneCheck(
        checkpoint_step=step,
        frames=frames,
        correlation_with_phones=with_phones,
        correlation_without_phones=without,
    )


def test_the_phones_are_turned_off_only_when_the_voice_alone_is_clearly_better():
    assert _check(0.84, 0.90).uses_phones  # English captures: a few hundredths either way
    assert _check(0.81, 0.81 + MARGIN - 0.01).uses_phones
    assert not _check(0.48, 0.82).uses_phones  # a capture in a language the aligner does not know
    assert not _check(-0.23, 0.62).uses_phones
    assert _check(0.9, -0.5).uses_phones
    assert _check(-0.23, 0.62, frames=MIN_FRAMES - 1).uses_phones  # too few frames to judge
    assert _check(math.nan, 0.62).uses_phones and _check(0.3, math.nan).uses_phones
    assert "off" in _check(0.1, 0.8).summary() and "0.10" in _check(0.1, 0.8).summary()
    assert _check(0.8, 0.8).summary().startswith("phones: heard")


def test_the_captures_own_mouth_moves_half_by_the_phones_where_the_voice_alone_is_better_by_less_than_the_margin():
    assert _check(0.84, 0.80).capture_phone_weight == 1.0  # the phones at least as good
    assert _check(0.8, 0.8).capture_phone_weight == 1.0
    assert _check(0.71, 0.78).capture_phone_weight == HALF  # the Spanish capture
    assert _check(0.81, 0.81 + MARGIN - 0.01).capture_phone_weight == HALF
    assert _check(0.48, 0.82).capture_phone_weight == 0.0  # off
    assert _check(0.71, 0.78, frames=MIN_FRAMES - 1).capture_phone_weight == 1.0  # too few frames to judge
    assert (
        _check(math.nan, 0.62).capture_phone_weight == 1.0
        and _check(0.3, math.nan).capture_phone_weight == 1.0
    )
    assert "half" in _check(0.71, 0.78).summary() and "half" not in _check(0.8, 0.7).summary()


def test_inner_lip_gap_is_how_far_the_facing_inner_lips_move_apart():
    motion = np.zeros((3, len(MOUTH_AND_JAW), 3), np.float32)
    motion[1, INNER_LIP_LOWER_ROWS, 1] = 0.004  # the lower lip's rows moved along y
    motion[2, INNER_LIP_UPPER_ROWS, 1] = 0.004  # the upper lip down onto it
    motion[2, INNER_LIP_LOWER_ROWS, 1] = 0.004
    np.testing.assert_allclose(inner_lip_gap(motion), [0.0, 0.004, 0.0], atol=1e-9)


def _motion_with_gap(gap: np.ndarray) -> np.ndarray:
    motion = np.zeros((len(gap), len(MOUTH_AND_JAW), 3), np.float32)
    motion[:, INNER_LIP_LOWER_ROWS, 1] = gap[:, None]
    return motion


@pytest.mark.parametrize("phones_right", [True, False])
def test_the_check_measures_which_prediction_follows_the_tracked_mouth(phones_right):
    rng = np.random.default_rng(0)
    tracked_gap = np.abs(np.sin(np.arange(200) / 3.0)) * 0.01
    right = tracked_gap + rng.normal(0, 0.001, 200)
    wrong = rng.permutation(tracked_gap)  # a mouth that moves as much, at the wrong times
    asked = []

    def predicted(with_phones: bool) -> np.ndarray:
        asked.append(with_phones)
        return _motion_with_gap(right if with_phones == phones_right else wrong)

    held_out = np.arange(150, 200)
    check = measure_phone_check(predicted, _motion_with_gap(tracked_gap), held_out, checkpoint_step=7)
    assert sorted(asked) == [False, True] and check.frames == 50 and check.checkpoint_step == 7
    good, bad = (
        (check.correlation_with_phones, check.correlation_without_phones)
        if phones_right
        else (check.correlation_without_phones, check.correlation_with_phones)
    )
    assert good > 0.9 and abs(bad) < 0.4
    assert check.uses_phones == phones_right


def test_a_still_prediction_or_no_held_out_frame_keeps_the_phones():
    tracked = _motion_with_gap(np.linspace(0, 0.01, 60))
    still = measure_phone_check(lambda with_phones: tracked * with_phones, tracked, np.arange(60), 1)
    assert math.isnan(still.correlation_without_phones) and still.uses_phones
    empty = measure_phone_check(lambda with_phones: tracked, tracked, np.zeros(0, np.int64), 1)
    assert empty.frames == 0 and empty.uses_phones


def test_a_kept_check_is_read_back_for_its_checkpoint_only(tmp_path):
    path = tmp_path / "phone_check.json"
    calls = []

    def measure(step: int) -> PhoneCheck:
        calls.append(step)
        return _check(0.2, 0.7, step=step)

    first = cached_phone_check(path, 100, lambda: measure(100))
    assert PhoneCheck.read(path) == first and not first.uses_phones
    assert cached_phone_check(path, 100, lambda: measure(100)) == first and calls == [100]
    assert cached_phone_check(path, 200, lambda: measure(200)).checkpoint_step == 200 and calls == [100, 200]
    path.write_text("{not json")
    assert cached_phone_check(path, 200, lambda: measure(200)) == _check(0.2, 0.7, step=200)
    assert calls == [100, 200, 200]
    with pytest.raises(AvatarError, match="phone_check.json is corrupt"):
        path.write_text("{")
        PhoneCheck.read(path)
