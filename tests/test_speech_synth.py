"""The speech synthesiser: deterministic, and speech-like in rhythm, pitch and loudness."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.sample.speech import synthesize_speech


@pytest.fixture(scope="module")
def speech():
    return synthesize_speech(8.0, sample_rate=16000, seed=0)


def test_same_seed_same_samples_other_seed_differs() -> None:
    first = synthesize_speech(2.0, seed=7)
    assert np.array_equal(first.audio, synthesize_speech(2.0, seed=7).audio)
    assert np.array_equal(first.envelope, synthesize_speech(2.0, seed=7).envelope)
    assert not np.array_equal(first.audio, synthesize_speech(2.0, seed=8).audio)


def test_shapes_and_ranges(speech) -> None:
    assert speech.audio.shape == speech.envelope.shape == (128000,)
    assert speech.audio.dtype == speech.envelope.dtype == np.float32
    assert np.abs(speech.audio).max() <= 1.0
    assert speech.envelope.min() >= 0.0 and speech.envelope.max() <= 1.0


def _syllable_onsets(envelope: np.ndarray) -> np.ndarray:
    return np.flatnonzero((envelope[1:] > 0.05) & (envelope[:-1] <= 0.05))


def test_syllable_rate_and_pauses(speech) -> None:
    onsets = _syllable_onsets(speech.envelope)
    voiced_seconds = np.count_nonzero(speech.envelope > 0) / 16000
    assert 3.0 <= len(onsets) / voiced_seconds <= 5.5
    silent = np.concatenate([[0], (speech.envelope == 0).astype(np.int8), [0]])
    starts, stops = np.flatnonzero(np.diff(silent) == 1), np.flatnonzero(np.diff(silent) == -1)
    assert np.count_nonzero((stops - starts) / 16000 >= 0.2) >= 2  # pauses between phrases


def test_pitch_is_in_the_speaking_range(speech) -> None:
    pitches = []
    for onset in _syllable_onsets(speech.envelope):
        segment = speech.audio[onset + 800 : onset + 1440].astype(np.float64)
        segment -= segment.mean()
        autocorrelation = np.correlate(segment, segment, "full")[len(segment) - 1 :]
        shortest, longest = 16000 // 250, 16000 // 80
        pitches.append(16000 / (shortest + np.argmax(autocorrelation[shortest:longest])))
    assert 110 <= np.median(pitches) <= 200
    assert np.percentile(pitches, 90) - np.percentile(pitches, 10) > 15  # the pitch moves


def test_loudness_follows_the_envelope(speech) -> None:
    power = np.convolve(speech.audio.astype(np.float64) ** 2, np.ones(320) / 320, mode="same")
    r = np.corrcoef(np.sqrt(power)[::160], speech.envelope[::160])[0, 1]
    assert r > 0.8
