from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from avatar.drive.articulation import (
    MAX_GAIN,
    ArticulationLevel,
    articulation_gain,
    capture_level,
    motion_rms,
    predicted_motion,
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


def test_gain_brings_the_clip_s_articulation_to_the_capture_s():
    head = _talking_head()
    signals = _signals(np.full(60, 0.5))
    motion, rest = predicted_motion(head, signals, np.arange(60))
    driven = motion_rms(motion, rest)
    assert driven > 1e-4
    fps, confidence = 10.0, 60 / (60 + 20)  # 6 s of speech
    level = ArticulationLevel(rms=1.6 * driven, speech_loudness=0.0)
    assert articulation_gain(head, signals, level, fps) == pytest.approx(1.6**confidence, rel=1e-4)
    smaller = ArticulationLevel(rms=0.8 * driven, speech_loudness=0.0)
    assert articulation_gain(head, signals, smaller, fps) == pytest.approx(0.8**confidence, rel=1e-4)
    huge = ArticulationLevel(rms=100 * driven, speech_loudness=0.0)
    assert articulation_gain(head, signals, huge, fps) == MAX_GAIN


def test_a_short_clip_s_gain_is_drawn_towards_one():
    head = _talking_head()
    signals = _signals(np.full(100, 0.5))
    motion, rest = predicted_motion(head, signals, np.arange(100))
    level = ArticulationLevel(rms=2 * motion_rms(motion, rest), speech_loudness=0.0)
    fps = 25.0  # 4 s of speech: 100 / (100 + 50) of the measured gain, in log
    assert articulation_gain(head, signals, level, fps) == pytest.approx(2 ** (100 / 150), rel=1e-4)
    raw = level.rms / motion_rms(*predicted_motion(head, signals, np.arange(50)))
    half = articulation_gain(head, signals, level, fps, np.arange(50))  # 2 s: half, in log
    assert half == pytest.approx(raw**0.5, rel=1e-4)
    assert articulation_gain(head, signals, level, fps, np.arange(20)) == 1.0  # under 1 s: not measured


def test_gain_measures_the_speech_frames_and_leaves_a_silent_clip_alone():
    head = _talking_head()
    loudness = np.r_[np.full(40, 0.5), np.full(40, -3.0)]  # speech, then a long pause
    signals = _signals(loudness)
    motion, rest = predicted_motion(head, signals, np.arange(40))
    level = ArticulationLevel(rms=2 * motion_rms(motion, rest), speech_loudness=0.0)
    assert articulation_gain(head, signals, level, 10.0) == pytest.approx(2 ** (40 / 60), rel=1e-4)
    assert articulation_gain(head, _signals(np.full(80, -3.0)), level, 25.0) == 1.0  # nothing to measure
