from __future__ import annotations

import numpy as np
import pytest

from avatar.audio.sync import audio_offset_frames, shift_frames, speech_loudness


def _syllables(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    envelope = np.convolve(rng.random(count) > 0.7, np.hanning(7), mode="same")
    return envelope + 0.05 * rng.normal(size=count)


@pytest.mark.parametrize("lead", [-4, 0, 3, 6])
def test_offset_recovers_how_far_the_mouth_leads_the_audio(lead):
    mouth = _syllables(400, seed=1)
    loudness = shift_frames(mouth, -lead)  # the sound of frame i arrives at frame i + lead
    offset, correlation = audio_offset_frames(mouth, loudness)
    assert offset == lead
    assert correlation > 0.9
    np.testing.assert_allclose(shift_frames(loudness, offset)[10:-10], mouth[10:-10])


def _held_open(values: np.ndarray, release: float) -> np.ndarray:
    """A mouth that opens with its sound at once and closes slowly: each frame at least `release` of the last."""
    held = values.copy()
    for index in range(1, len(held)):
        held[index] = max(held[index], release * held[index - 1])
    return held


@pytest.mark.parametrize("lead", [0, 3, 6])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_mouth_held_open_after_its_sound_does_not_pull_the_offset_early(lead, seed):
    loudness = _syllables(600, seed)
    mouth = _held_open(shift_frames(loudness, lead), release=0.9)
    assert audio_offset_frames(mouth, loudness)[0] == lead


def test_unrelated_or_flat_signals_give_no_offset():
    mouth = _syllables(2000, 1)
    offset, correlation = audio_offset_frames(mouth, -mouth)
    assert offset == 0 and correlation < 0.15
    assert audio_offset_frames(np.zeros(300), _syllables(300, 2)) == (0, 0.0)
    with pytest.raises(ValueError):
        audio_offset_frames(np.zeros(5), np.zeros(6))


def test_shift_frames_repeats_the_ends_and_loudness_reads_the_middle_steps():
    values = np.arange(5)
    assert shift_frames(values, 2).tolist() == [2, 3, 4, 4, 4]
    assert shift_frames(values, -1).tolist() == [0, 0, 1, 2, 3]
    windows = np.zeros((2, 16, 80), np.float32)
    windows[1, 7:9] = 1.0
    windows[0, 0] = 5.0  # far from the middle: not this frame's loudness
    assert speech_loudness(windows).tolist() == [0.0, 1.0]
