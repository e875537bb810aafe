"""The driving features (avatar.audio.driving): normalised log-mel windows with the clip's phones beside them."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.audio.driving import PHONE_CLASSES, driving_features, phone_activity, phone_windows
from avatar.audio.features import AudioFeatureConfig, audio_features_for_frames, frame_audio_windows
from avatar.audio.normalization import AudioNormalization, normalize_audio_windows
from avatar.audio.phones import ARPABET, PhoneSegment, align_speech
from avatar.media.audio_io import load_audio

CONFIG = AudioFeatureConfig()
FPS = 25.0


def test_phone_activity_is_a_one_hot_of_the_phone_at_each_step_centre():
    phones = [PhoneSegment("SIL", 0.0, 0.1), PhoneSegment("AA", 0.1, 0.25), PhoneSegment("M", 0.25, 0.3)]
    activity = phone_activity(phones, 20, CONFIG)  # steps of 20 ms, centres 10, 30, .. 390 ms
    assert activity.shape == (20, PHONE_CLASSES) and activity.dtype == np.float32
    assert activity[:5].sum() == 0  # centres 10 .. 90 ms: silence
    assert (activity[5:12, ARPABET.index("AA")] == 1).all()  # 110 .. 230 ms
    assert (activity[12:15, ARPABET.index("M")] == 1).all()  # 250 .. 290 ms
    assert activity[15:].sum() == 0 and (activity.sum(1) <= 1).all()


def test_phone_windows_line_up_with_the_log_mel_windows():
    steps = 100
    activity = phone_activity([PhoneSegment("IY", 0.5, 0.7)], steps, CONFIG)
    windows = frame_audio_windows(activity, 50, FPS, CONFIG, fill=0.0)
    column = activity[:, [ARPABET.index("IY")]]
    mel_like = frame_audio_windows(np.tile(column, (1, CONFIG.n_mels)), 50, FPS, CONFIG, fill=0.0)
    assert windows.shape == (50, CONFIG.window_steps, PHONE_CLASSES)
    np.testing.assert_array_equal(windows[..., ARPABET.index("IY")], mel_like[..., 0])
    assert windows[0].sum() == 0  # padded with zeros, not the log-mel of silence
    middle = CONFIG.window_steps // 2
    spoken = windows[:, middle, ARPABET.index("IY")] == 1  # frame i's own step is 2 i at 25 fps
    assert np.flatnonzero(spoken).tolist() == list(range(12, 17))  # frames 12 .. 16: 0.5 .. 0.7 s


def test_audio_that_cannot_be_aligned_gets_zero_phones_and_a_note():
    pytest.importorskip("pocketsphinx")
    noise = (np.random.default_rng(0).normal(size=16000 * 2) * 0.1).astype(np.float32)
    speech = align_speech(noise, 16000)
    windows = phone_windows(speech, 50, FPS, CONFIG)
    assert windows.shape == (50, CONFIG.window_steps, PHONE_CLASSES)
    assert not windows.any() and speech.note and "English" in speech.note
    silence = np.zeros(16000, np.float32)
    assert "silent" in align_speech(silence, 16000).note


@pytest.mark.shared_data
def test_driving_features_of_real_speech(shared_data):
    pytest.importorskip("pocketsphinx")
    audio = load_audio(shared_data / "ljspeech_LJ001-0001.wav", CONFIG.sample_rate)
    frames = int(len(audio) / CONFIG.sample_rate * FPS)
    mel = audio_features_for_frames(audio, frames, FPS, CONFIG)
    normalization = AudioNormalization()
    features = driving_features(
        mel, FPS, CONFIG, normalization, speech=align_speech(audio, CONFIG.sample_rate)
    )
    assert features.shape == (frames, CONFIG.window_steps, CONFIG.n_mels + PHONE_CLASSES)
    np.testing.assert_array_equal(features[..., : CONFIG.n_mels], normalize_audio_windows(mel, normalization))
    own_step = features[:, CONFIG.window_steps // 2, CONFIG.n_mels :]
    assert own_step.sum(1).mean() > 0.7  # a read sentence: a phone under most frames
    vowels = [ARPABET.index(p) for p in ("AA", "AE", "AH", "IH", "IY", "EH")]
    assert own_step[:, vowels].sum() > 0.2 * frames
    without = driving_features(mel, FPS, CONFIG, normalization, speech=None)
    assert without.shape[-1] == CONFIG.n_mels
