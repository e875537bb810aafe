"""The eye signal of a render: capture, none, periodic."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.drive.blinks import BLINK_SECONDS, eye_levels, eye_signal, periodic_blinks


def test_periodic_blinks_are_3_to_5_seconds_apart_and_about_150_ms_long():
    fps = 25.0
    signal = periodic_blinks(int(60 * fps), fps, open_level=0.3, closed_level=0.05, seed=4)
    below = signal < 0.3 - 1e-9
    starts = np.flatnonzero(below[1:] & ~below[:-1]) + 1
    ends = np.flatnonzero(~below[1:] & below[:-1]) + 1
    gaps = np.diff(starts) / fps
    assert len(starts) >= 12 and ((gaps > 2.9) & (gaps < 5.1)).all(), gaps
    durations = (ends - starts[: len(ends)]) / fps
    assert (durations <= BLINK_SECONDS + 1 / fps).all() and (durations >= BLINK_SECONDS - 2 / fps).all()
    assert signal.min() < 0.12 and signal.max() == pytest.approx(0.3)


def test_eye_signal_modes():
    rng = np.random.default_rng(0)
    capture = np.clip(rng.normal(0.3, 0.01, 500), 0, None)
    capture[100:104] = 0.04  # one blink
    looped = capture[np.arange(200) % 150]
    np.testing.assert_array_equal(eye_signal("capture", capture, looped, 25.0), looped)
    open_level, closed_level = eye_levels(capture)
    assert open_level == pytest.approx(0.3, abs=0.01) and closed_level < 0.1
    blink = np.zeros(500, bool)
    blink[99:105] = True
    assert eye_levels(capture, blink)[1] == pytest.approx(0.04, abs=0.02)
    np.testing.assert_array_equal(eye_signal("none", capture, looped, 25.0), np.full(200, open_level))
    periodic = eye_signal("periodic", capture, looped, 25.0)
    assert periodic.shape == (200,) and periodic.min() < 0.5 * open_level
    with pytest.raises(ValueError, match="blink mode"):
        eye_signal("sometimes", capture, looped, 25.0)
