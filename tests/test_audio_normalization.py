from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from avatar.audio.features import audio_features_for_frames, num_video_frames
from avatar.audio.normalization import (
    AudioAugmentation,
    AudioNormalization,
    augment_audio_windows,
    dct_matrix,
    lifter,
    normalize_audio_windows,
)
from avatar.audio.sync import speech_loudness
from avatar.sample.speech import synthesize_speech

RATE = 16000
FPS = 25.0


def _driving(audio: np.ndarray) -> np.ndarray:
    frames = num_video_frames(len(audio), RATE, FPS)
    return normalize_audio_windows(audio_features_for_frames(audio.astype(np.float32), frames, FPS))


def _speech(seed: int = 1, seconds: float = 8.0):
    return synthesize_speech(seconds, RATE, seed=seed)


def _frame_envelope(envelope: np.ndarray) -> np.ndarray:
    per_frame = RATE // int(FPS)
    count = len(envelope) // per_frame
    return envelope[: count * per_frame].reshape(count, per_frame).mean(1)


@pytest.mark.parametrize("size", [8, 80])
def test_dct_matrix_is_orthonormal_dct_ii(size):
    matrix = dct_matrix(size)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(size), atol=1e-12)
    signal = np.random.default_rng(size).normal(size=size)
    n = np.arange(size)
    k = 3
    expected = np.sqrt(2.0 / size) * np.sum(signal * np.cos(np.pi / size * (n + 0.5) * k))
    assert (matrix @ signal)[k] == pytest.approx(expected)


def test_lifter_keeps_the_envelope_and_removes_harmonic_ripple():
    bands = np.arange(80)
    envelope = 0.8 * np.cos(np.pi / 80 * (bands + 0.5) * 2) + 0.3  # a low DCT term: kept
    ripple = 0.4 * np.cos(np.pi / 80 * (bands + 0.5) * 40)  # harmonics every 4 bands: removed
    smoothed = lifter((envelope + ripple)[None].astype(np.float32), 20)[0]
    np.testing.assert_allclose(smoothed, envelope, atol=1e-5)


def test_silence_is_zero_and_pauses_are_near_zero():
    silence = _driving(np.zeros(3 * RATE))
    assert silence.shape == (75, 16, 80)
    assert np.abs(silence).max() == 0.0

    speech = _speech()
    features = _driving(speech.audio)
    own_steps = speech_loudness(features)
    envelope = _frame_envelope(speech.envelope)[: len(own_steps)]
    pauses, loud = envelope < 0.02, envelope > 0.5
    assert pauses.sum() > 10 and loud.sum() > 10
    assert np.median(own_steps[pauses]) < 0.1
    assert np.median(own_steps[loud]) > 0.4


def test_features_depend_less_on_the_recordings_level_equalisation_and_noise_floor():
    """Relative to the difference between two unrelated utterances, a recording change (-20 dB with a
    treble boost; hiss 31 dB below the speech) moves the driving features much less than the log-mel."""
    speech = _speech(seed=2).audio
    unrelated = _speech(seed=5).audio
    rng = np.random.default_rng(0)
    variants = {
        "quiet_and_tilted": (lfilter([1.0, -0.9], [1.0], speech) * 0.1, 0.2),
        "noisy": (speech + rng.normal(scale=0.003, size=speech.size), 0.6),
    }

    def log_mel(audio):
        return audio_features_for_frames(
            audio.astype(np.float32), num_video_frames(len(audio), RATE, FPS), FPS
        )

    for name, (variant, bound) in variants.items():
        relative = {}
        for features in (log_mel, _driving):
            reference = features(speech)
            change = np.abs(features(variant) - reference).mean()
            relative[features] = change / np.abs(features(unrelated) - reference).mean()
        assert relative[_driving] < bound, name
        assert relative[_driving] < 0.7 * relative[log_mel], name


def test_normalisation_rejects_bad_shapes_and_settings():
    with pytest.raises(ValueError, match="windows must be"):
        normalize_audio_windows(np.zeros((16, 80)))
    with pytest.raises(ValueError):
        AudioNormalization(floor_percentile=90, peak_percentile=10)
    assert AudioNormalization.from_dict(AudioNormalization().to_dict()) == AudioNormalization()


def test_augmentation_is_reproducible_and_perturbs_only_when_drawn():
    features = torch.rand(3, 9, 16, 80)
    never = augment_audio_windows(
        features, torch.Generator().manual_seed(0), AudioAugmentation(probability=0)
    )
    assert torch.equal(never, features)

    always = AudioAugmentation(probability=1.0, band_cut_probability=1.0)
    first = augment_audio_windows(features, torch.Generator().manual_seed(4), always)
    again = augment_audio_windows(features, torch.Generator().manual_seed(4), always)
    other = augment_audio_windows(features, torch.Generator().manual_seed(5), always)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == features.shape
    # every sample lost its top bands (to the pause level, plus noise) and kept its low ones, perturbed
    assert (first[..., -1].abs() < 0.2).all()
    low = first[..., :10] - features[..., :10]
    assert 0.0 < low.abs().mean() < 0.5
