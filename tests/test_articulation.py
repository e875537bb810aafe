from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from avatar.drive.articulation import (
    MAX_GAIN,
    ArticulationLevel,
    articulation_gain,
    capture_level,
    clip_motion,
    frame_motion,
    motion_rms,
    silence_motion,
    smoothed_over_time,
)
from avatar.model.talking_head import ClipSignals
from tests.test_model_talking_head import CHANNELS, make_head


def test_motion_rms_is_the_distance_from_rest():
    rest = np.zeros((2, 3))
    motion = np.zeros((4, 2, 3))
    motion[:, 0, 1] = [0.003, -0.003, 0.004, 0.0]
    motion[:, 1, 0] = [0.004, 0.004, 0.003, 0.0]
    assert motion_rms(motion, rest) == pytest.approx(np.sqrt(3 * 25e-6 / 4))  # 5 mm in 3 frames of 4
    assert motion_rms(motion + 0.01, rest + 0.01) == pytest.approx(motion_rms(motion, rest))
    assert np.isnan(motion_rms(motion[:0], rest))


def test_capture_level_measures_only_the_speech_frames():
    loudness = np.linspace(-2.0, 1.0, 100)
    tracked = np.zeros((100, 1, 3))
    tracked[:, 0, 1] = np.where(loudness > -1.2, 0.004, 0.0)  # speech opens the mouth 4 mm
    level = capture_level(tracked, np.zeros((1, 3)), loudness, np.arange(0, 100, 2))
    assert level.speech_loudness == pytest.approx(np.quantile(loudness[::2], 0.3))
    assert level.rms == pytest.approx(0.004)  # the pauses below the 30 % quantile do not dilute it


def _signals(loudness: np.ndarray, seed: int = 0) -> ClipSignals:
    rng = np.random.default_rng(seed)
    frames = len(loudness)
    audio = rng.normal(size=(frames, 16, CHANNELS)).astype(np.float32) * 0.5 + loudness[:, None, None]
    return ClipSignals(
        audio, np.ones(frames), np.stack([np.eye(3)] * frames), np.tile([0, 0, 0.5], (frames, 1))
    )


def _talking_head():
    head = make_head(200, seed=1)
    with torch.no_grad():
        for member in head.deformation.motion_predictors:
            nn.init.normal_(member.head.weight, std=0.3)
    return head


def _driven_rms(head, signals: ClipSignals, fps: float, frames: np.ndarray) -> float:
    """The rms the gain matches: that of the unsmoothed prediction (the smoothing's loss is made good apart)."""
    return motion_rms(frame_motion(head, signals)[frames], silence_motion(head, signals))


def _smoothing_loss(head, signals: ClipSignals, fps: float, frames: np.ndarray) -> float:
    rest = silence_motion(head, signals)
    return motion_rms(frame_motion(head, signals)[frames], rest) / motion_rms(
        clip_motion(head, signals, fps)[frames], rest
    )


def test_gain_brings_the_clip_s_articulation_to_the_capture_s():
    head = _talking_head()
    signals = _signals(np.full(60, 0.5))
    fps, confidence = 10.0, 60 / (60 + 10)  # 6 s of speech against the prior's 1 s
    driven = _driven_rms(head, signals, fps, np.arange(60))
    assert driven > 1e-4
    level = ArticulationLevel(rms=1.6 * driven, speech_loudness=0.0)
    loss = _smoothing_loss(head, signals, fps, np.arange(60))
    assert articulation_gain(head, signals, level, fps) == pytest.approx(1.6**confidence * loss, rel=1e-4)
    smaller = ArticulationLevel(rms=0.8 * driven, speech_loudness=0.0)
    assert articulation_gain(head, signals, smaller, fps) == pytest.approx(0.8**confidence * loss, rel=1e-4)
    huge = ArticulationLevel(rms=100 * driven, speech_loudness=0.0)
    assert articulation_gain(head, signals, huge, fps) == MAX_GAIN


def test_a_short_clip_s_gain_is_drawn_towards_one():
    head = _talking_head()
    signals = _signals(np.full(100, 0.5))
    fps = 25.0  # 4 s of speech: 100 / (100 + 25) of the measured gain, in log
    level = ArticulationLevel(rms=2 * _driven_rms(head, signals, fps, np.arange(100)), speech_loudness=0.0)
    loss = _smoothing_loss(head, signals, fps, np.arange(100))
    assert articulation_gain(head, signals, level, fps) == pytest.approx(2 ** (100 / 125) * loss, rel=1e-4)
    raw = level.rms / _driven_rms(head, signals, fps, np.arange(25))
    half = articulation_gain(head, signals, level, fps, np.arange(25))  # 1 s: half, in log
    assert half == pytest.approx(raw**0.5 * _smoothing_loss(head, signals, fps, np.arange(25)), rel=1e-4)
    assert articulation_gain(head, signals, level, fps, np.arange(20)) == 1.0  # under 1 s: not measured


def test_gain_measures_the_speech_frames_and_leaves_a_silent_clip_alone():
    head = _talking_head()
    loudness = np.r_[np.full(40, 0.5), np.full(40, -3.0)]  # speech, then a long pause
    signals = _signals(loudness)
    level = ArticulationLevel(rms=2 * _driven_rms(head, signals, 10.0, np.arange(40)), speech_loudness=0.0)
    loss = _smoothing_loss(head, signals, 10.0, np.arange(40))
    assert articulation_gain(head, signals, level, 10.0) == pytest.approx(2 ** (40 / 50) * loss, rel=1e-4)
    assert articulation_gain(head, _signals(np.full(80, -3.0)), level, 25.0) == 1.0  # nothing to measure


def test_smoothing_keeps_speech_rate_motion_and_closures_and_damps_jitter():
    frames = np.arange(200)
    slow = np.sin(2 * np.pi * 2.0 * frames / 25)[:, None, None] * np.ones((1, 3, 3))  # 2 Hz, a syllable rate
    kept = smoothed_over_time(slow, 25.0)
    assert kept.shape == slow.shape
    assert np.abs(kept[10:-10]).max() > 0.85  # the peaks of speech-rate motion stay
    jitter = np.random.default_rng(0).normal(size=(200, 3, 3))
    assert smoothed_over_time(jitter, 25.0).std() < 0.65 * jitter.std()  # 0.56 for white noise
    spike = np.zeros(50)
    spike[20] = 1.0  # one frame off: gone
    assert np.abs(smoothed_over_time(spike, 25.0)).max() < 1e-6
    closure = np.ones(50)
    closure[20:23] = 0.0  # lips shut for 3 frames (120 ms): still shut
    assert smoothed_over_time(closure, 25.0)[21] < 0.15
    assert smoothed_over_time(np.full((7, 2), 3.0), 25.0) == pytest.approx(np.full((7, 2), 3.0))
    assert np.array_equal(smoothed_over_time(slow, 25.0, median_seconds=0.0, seconds=0.0), slow)


def test_smoothing_is_set_in_seconds_not_frames():
    step = np.r_[np.zeros(60), np.ones(60)].astype(np.float32)
    rise = {
        fps: np.sum((smoothed_over_time(step, fps) > 0.1) & (smoothed_over_time(step, fps) < 0.9)) / fps
        for fps in (25.0, 50.0)
    }
    assert rise[25.0] == pytest.approx(rise[50.0], abs=1 / 25)
    assert 0.04 <= rise[50.0] <= 0.16  # 10-90 % in about 2.6 standard deviations of 40 ms


def test_clip_motion_is_the_prediction_of_every_frame_smoothed(monkeypatch):
    import avatar.drive.articulation as articulation

    monkeypatch.setattr(articulation, "CHUNK_FRAMES", 16)  # several chunks
    head = _talking_head()
    signals = _signals(np.linspace(-1.0, 1.0, 50))
    with torch.no_grad():
        frames = signals.conditions(np.arange(50), window=head.window)
        per_frame = head.deformation.predicted_motion(frames.audio).numpy()
    motion = clip_motion(head, signals, 25.0)
    assert motion.shape == per_frame.shape
    np.testing.assert_allclose(motion, smoothed_over_time(per_frame, 25.0), atol=1e-7)
    assert not np.allclose(motion, per_frame)  # the audio varies frame to frame


def test_the_gain_makes_good_what_the_smoothing_takes_off_the_amplitude():
    head = _talking_head()
    signals = _signals(np.where(np.arange(60) % 2 == 0, 0.5, 2.5))  # a voice that changes every frame
    fps, confidence = 10.0, 60 / 70
    rest = silence_motion(head, signals)
    heard = motion_rms(frame_motion(head, signals), rest)
    shown = motion_rms(clip_motion(head, signals, fps), rest)
    assert shown < heard  # the smoothing takes amplitude off
    level = ArticulationLevel(rms=1.5 * heard, speech_loudness=0.0)
    expected = 1.5**confidence * heard / shown  # the prior applies to the clip, not to the filter
    assert articulation_gain(head, signals, level, fps) == pytest.approx(expected, rel=1e-4)


def test_the_gain_makes_good_in_full_what_a_mean_of_predictions_takes_off_the_amplitude():
    head = _talking_head()
    signals = _signals(np.full(60, 0.5))
    fps = 10.0
    rest = silence_motion(head, signals)
    smoothed = clip_motion(head, signals, fps)
    level = ArticulationLevel(rms=_driven_rms(head, signals, fps, np.arange(60)), speech_loudness=0.0)
    plain = articulation_gain(head, signals, level, fps)
    assert articulation_gain(head, replace(signals, motion=smoothed), level, fps) == pytest.approx(
        plain, rel=1e-5
    )
    # shown half as far from rest (two predictions that partly cancel): twice the scale, like the smoothing's loss
    halved = rest + 0.5 * (smoothed - rest)
    assert plain * 2 < MAX_GAIN
    assert articulation_gain(head, replace(signals, motion=halved), level, fps) == pytest.approx(
        plain * 2, rel=1e-4
    )
    still = np.repeat(rest[None], 60, axis=0)
    assert articulation_gain(head, replace(signals, motion=still), level, fps) == 1.0
