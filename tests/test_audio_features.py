from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch

from avatar.audio import features as audio_features
from avatar.audio.features import (
    AudioFeatureConfig,
    audio_features_for_frames,
    frame_audio_windows,
    hz_to_mel,
    log_mel_spectrogram,
    mel_centers_hz,
    mel_filterbank,
    mel_to_hz,
    num_video_frames,
    silence_feature_value,
)

CONFIG = AudioFeatureConfig()
RATE = CONFIG.sample_rate


def _sine(frequency: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * RATE)) / RATE)).astype(
        np.float32
    )


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a syllable-rate envelope: every step differs from its neighbours."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    return (0.2 * envelope * rng.standard_normal(t.size)).astype(np.float32)


def test_htk_mel_scale():
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)
    assert hz_to_mel(700.0) == pytest.approx(2595.0 * math.log10(2.0))
    hz = np.array([0.0, 50.0, 440.0, 7600.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-9)


def test_filterbank_triangles_peak_at_their_centres_and_tile_the_band():
    bank = mel_filterbank(CONFIG)
    bin_hz = np.linspace(0, RATE / 2, CONFIG.n_fft // 2 + 1)
    centers = mel_centers_hz(CONFIG)
    assert bank.shape == (80, 257)
    assert np.all(np.diff(hz_to_mel(centers)) == pytest.approx((hz_to_mel(7600) - hz_to_mel(50)) / 81))
    assert bank.min() >= 0 and bank.max() <= 1
    assert np.all(bank.sum(axis=1) > 0.25)  # no empty filter even where filters are narrower than a bin
    spacing = bin_hz[1]
    assert np.all(np.abs(bin_hz[bank.argmax(axis=1)] - centers) < spacing)
    edges = np.concatenate([[50.0], centers, [7600.0]])
    for m in range(80):
        assert np.all(bank[m, (bin_hz <= edges[m]) | (bin_hz >= edges[m + 2])] == 0)
    # Neighbouring triangles cross-fade linearly in Hz: between the first and last centre they sum to 1.
    inside = (bin_hz >= centers[0]) & (bin_hz <= centers[-1])
    np.testing.assert_allclose(bank[:, inside].sum(axis=0), 1.0, atol=1e-9)
    assert np.all(bank[:, (bin_hz <= 50.0) | (bin_hz >= 7600.0)] == 0)


@pytest.mark.parametrize("frequency", [100.0, 440.0, 1000.0, 3000.0, 6000.0])
def test_a_tone_lights_the_mel_bin_that_contains_it(frequency):
    log_mel = log_mel_spectrogram(_sine(frequency, 1.0), CONFIG)[5:-5].mean(axis=0)
    nearest = int(np.argmin(np.abs(mel_centers_hz(CONFIG) - frequency)))
    peak = int(np.argmax(log_mel))
    assert abs(peak - nearest) <= 1
    far = np.abs(np.arange(80) - peak) > 8
    assert log_mel[peak] - log_mel[far].max() > 3.0


def test_log_and_normalisation_are_fixed_not_per_clip():
    quiet = log_mel_spectrogram(_sine(1000.0, 1.0, amplitude=0.1), CONFIG)
    loud = log_mel_spectrogram(_sine(1000.0, 1.0, amplitude=0.2), CONFIG)
    peak = int(np.argmax(loud[10]))
    # Twice the amplitude is four times the power: ln(4) / log_scale higher, wherever the clip's level is.
    np.testing.assert_allclose(
        loud[5:-5, peak] - quiet[5:-5, peak], math.log(4.0) / CONFIG.log_scale, atol=1e-4
    )
    # A full-scale sine at a bin centre: power (sum of window / 2)^2 = 100^2 -> (ln(1e4) + 5) / 4.
    centre_tone = _sine(mel_centers_hz(CONFIG)[40], 1.0, amplitude=1.0)
    assert log_mel_spectrogram(centre_tone, CONFIG)[10].max() == pytest.approx(
        (math.log(1e4) + 5) / 4, abs=0.1
    )


def test_silence_is_the_floor_value_everywhere():
    log_mel = log_mel_spectrogram(np.zeros(RATE, np.float32), CONFIG)
    assert silence_feature_value(CONFIG) == pytest.approx((math.log(1e-5) + 5.0) / 4.0)
    assert log_mel.shape == (50, 80) and log_mel.dtype == np.float32
    assert np.all(log_mel == np.float32(silence_feature_value(CONFIG)))
    windows = audio_features_for_frames(np.zeros(RATE, np.float32), 25, 25.0)
    assert np.all(windows == np.float32(silence_feature_value(CONFIG)))


@pytest.mark.parametrize(
    "num_samples, num_steps", [(0, 0), (1, 1), (320, 1), (321, 2), (16000, 50), (16001, 51)]
)
def test_one_step_per_hop_covering_the_clip(num_samples, num_steps):
    assert log_mel_spectrogram(np.zeros(num_samples, np.float32), CONFIG).shape == (num_steps, 80)


def test_matches_torch_stft_with_the_documented_alignment():
    audio = _speech_like(1.3)
    ours = log_mel_spectrogram(audio, CONFIG)
    # Step k is centred on sample k * hop + hop / 2: an uncentred STFT of the clip padded by n_fft/2 - hop/2.
    padded = torch.from_numpy(np.pad(audio, (256 - 160, 512)))
    window = torch.hann_window(400, periodic=True, dtype=torch.float64)
    spectrum = torch.stft(padded.double(), 512, 320, 400, window, center=False, return_complex=True)
    power = spectrum.abs().square().T[: ours.shape[0]].numpy()  # [T, 257]
    mel = power @ mel_filterbank(CONFIG).T
    expected = (np.log(np.maximum(mel, 1e-5)) + 5.0) / 4.0
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_chunked_stft_matches_one_chunk(monkeypatch):
    audio = _speech_like(2.0)
    whole = log_mel_spectrogram(audio, CONFIG)
    monkeypatch.setattr(audio_features, "_STEPS_PER_CHUNK", 7)
    np.testing.assert_array_equal(log_mel_spectrogram(audio, CONFIG), whole)


def _click_at(seconds_total: float, click_sample: int) -> np.ndarray:
    audio = np.zeros(int(seconds_total * RATE), np.float32)
    audio[click_sample] = 1.0
    return audio


def _lit_positions(window: np.ndarray) -> list[int]:
    return np.flatnonzero(window.max(axis=1) > silence_feature_value(CONFIG) + 1e-3).tolist()


def test_a_click_at_a_frames_centre_is_in_the_middle_of_its_window_at_25fps():
    frame = 30
    click = round((frame + 0.5) / 25 * RATE)
    windows = audio_features_for_frames(_click_at(3.0, click), 75, 25.0)
    assert _lit_positions(windows[frame]) == [7, 8]  # window positions W/2 - 1 and W/2
    assert _lit_positions(windows[frame - 1]) == [9, 10]
    assert _lit_positions(windows[frame + 1]) == [5, 6]
    assert _lit_positions(windows[frame - 4]) == [15]  # the farthest frames that still see the click
    assert _lit_positions(windows[frame + 4]) == [0]
    for other in range(75):
        if abs(other - frame) >= 5:
            assert _lit_positions(windows[other]) == [], other


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0, 60.0])
@pytest.mark.parametrize("frame", [0, 17, 40])
def test_a_click_at_a_frames_centre_is_near_the_middle_of_its_window(fps, frame):
    click = round((frame + 0.5) / fps * RATE)
    num_frames = int(2.0 * fps)
    windows = audio_features_for_frames(_click_at(2.0, click), num_frames, fps)
    lit = _lit_positions(windows[frame])
    assert lit and set(lit) <= {6, 7, 8, 9}
    assert np.mean(lit) == pytest.approx(7.5, abs=1.0)
    steps_per_frame = RATE / CONFIG.hop_length / fps
    for other in range(num_frames):
        if abs(other - frame) * steps_per_frame > CONFIG.window_steps / 2 + 2:
            assert _lit_positions(windows[other]) == [], other


@pytest.mark.parametrize("fps", [25.0, 30.0])
@pytest.mark.parametrize("seconds", [0.0, 0.05, 1.0, 2.37])
def test_window_shapes_and_padding_outside_the_clip(fps, seconds):
    audio = _speech_like(seconds) if seconds else np.zeros(0, np.float32)
    num_frames = num_video_frames(audio.size, RATE, fps)
    windows = audio_features_for_frames(audio, num_frames, fps)
    assert windows.shape == (num_frames, 16, 80) and windows.dtype == np.float32
    extra = audio_features_for_frames(audio, num_frames + 20, fps)
    np.testing.assert_array_equal(extra[:num_frames], windows)
    assert np.all(extra[num_frames + 10 :] == np.float32(silence_feature_value(CONFIG)))


def test_steps_before_the_clip_are_silence_at_25fps():
    windows = audio_features_for_frames(_speech_like(1.0), 25, 25.0)
    silence = np.float32(silence_feature_value(CONFIG))
    assert np.all(windows[0, :7] == silence)  # frame 0's window starts at step -7
    assert np.all(windows[0, 7:].max(axis=1) > silence + 1.0)
    assert np.all(windows[3, :1] == silence) and np.all(windows[4] > silence)


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_a_longer_clip_gives_the_same_first_frames(fps):
    long_audio = _speech_like(4.0, seed=3)
    short_audio = long_audio[: 2 * RATE]
    as_is = AudioFeatureConfig(speech_level_dbfs=None)  # the loudness normalisation looks at the whole clip
    long = audio_features_for_frames(long_audio, num_video_frames(long_audio.size, RATE, fps), fps, as_is)
    short = audio_features_for_frames(short_audio, num_video_frames(short_audio.size, RATE, fps), fps, as_is)
    assert short.shape[0] == int(2 * fps)
    # Frames whose windows (plus the STFT's reach of n_fft / 2) end before the cut see the same audio.
    unaffected = int((2.0 - (8 * 320 + 256 + 320) / RATE) * fps) - 1
    np.testing.assert_array_equal(short[:unaffected], long[:unaffected])
    assert not np.array_equal(short[-1], long[short.shape[0] - 1])  # and the cut does show at the end


def test_loudness_is_normalised_and_silence_stays_silent():
    speech = _speech_like(3.0, seed=5)
    loud = audio_features_for_frames(speech, 75, 25.0)
    quiet = audio_features_for_frames(0.05 * speech, 75, 25.0)
    np.testing.assert_allclose(quiet, loud, atol=1e-4)
    raw_loud = audio_features_for_frames(speech, 75, 25.0, AudioFeatureConfig(speech_level_dbfs=None))
    raw_quiet = audio_features_for_frames(0.05 * speech, 75, 25.0, AudioFeatureConfig(speech_level_dbfs=None))
    assert np.abs(raw_loud - raw_quiet).max() > 1.0
    silence = audio_features_for_frames(np.zeros(3 * RATE, np.float32), 75, 25.0)
    np.testing.assert_array_equal(silence, silence_feature_value(CONFIG))


def test_frame_audio_windows_takes_precomputed_features():
    log_mel = log_mel_spectrogram(_speech_like(1.0), CONFIG)
    windows = frame_audio_windows(log_mel, 25, 25.0, CONFIG)
    for frame in (5, 12, 20):
        np.testing.assert_array_equal(windows[frame], log_mel[2 * frame - 7 : 2 * frame + 9])
    with pytest.raises(ValueError):
        frame_audio_windows(log_mel[:, :40], 25, 25.0, CONFIG)


@pytest.mark.parametrize(
    "num_samples, fps, frames",
    [(0, 25.0, 0), (16000, 25.0, 25), (16000, 29.97, 30), (7840, 25.0, 12), (8000, 25.0, 13), (8160, 25.0, 13),
     (390_000, 25.0, 609), (390_000, 30.0, 731)],
)  # fmt: skip
def test_num_video_frames_rounds_to_nearest(num_samples, fps, frames):
    assert num_video_frames(num_samples, 16000, fps) == frames


def test_config_rejects_inconsistent_settings():
    for bad in (
        dict(win_length=600),
        dict(hop_length=0),
        dict(f_max=9000.0),
        dict(f_min=8000.0, f_max=7000.0),
    ):
        with pytest.raises(ValueError):
            AudioFeatureConfig(**bad)


def test_ten_minutes_of_audio_stays_under_500_mb():
    audio = (0.1 * np.random.default_rng(0).standard_normal(600 * RATE)).astype(np.float32)  # 38 MB
    num_frames = num_video_frames(audio.size, RATE, 25.0)
    tracemalloc.start()
    try:
        windows = audio_features_for_frames(audio, num_frames, 25.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert windows.shape == (15000, 16, 80)
    assert peak < 500e6
