"""Log-mel audio features aligned to video frames, computed without any pretrained network.

Conventions (all fixed, so features of new audio at render time match the features seen in training):

- STFT: periodic Hann window of `win_length` samples, centred in `n_fft` samples, hop `hop_length`; power
  spectrum |X|^2 of audio in [-1, 1], not normalised by the window (a full-scale sine peaks near
  (win_length / 4)^2). Samples outside the clip count as zeros, i.e. silence.
- Feature steps: step k summarises the audio around samples [k * hop, (k + 1) * hop); its analysis window is
  centred on sample k * hop + hop // 2, time (k + 0.5) * hop / sample_rate. A clip of S samples has
  ceil(S / hop) steps; step k depends only on the samples within n_fft / 2 of its centre.
- Mel filterbank: HTK mel scale, mel = 2595 * log10(1 + f / 700); `n_mels` triangles of peak 1 between
  `n_mels + 2` points spaced evenly in mel from f_min to f_max, interpolated linearly in Hz, without area
  normalisation (torchaudio's MelSpectrogram default: mel_scale="htk", norm=None).
- Log and normalisation: (ln(max(mel, log_floor)) - log_offset) / log_scale with constants, not per-clip
  statistics. With the defaults, speech recorded at -17 to -30 dBFS RMS has mean -0.3 to +0.3 and standard
  deviation about 1, a full-scale sine peaks at +3.5, and digital silence is (ln(1e-5) + 5) / 4 = -1.628
  (`silence_feature_value`).
- Frame windows: video frame i is shown during [i / fps, (i + 1) / fps). Its window is the `window_steps` (W)
  steps whose time span is centred on (i + 0.5) / fps: steps [s_i, s_i + W) with
  s_i = round((i + 0.5) / fps * sample_rate / hop - W / 2), halves rounded up. At 25 fps with the defaults
  s_i = 2 i - 7, so the frame's own two steps 2 i and 2 i + 1 are window positions W / 2 - 1 and W / 2 and
  the window spans 160 ms before and after the frame's centre. Steps outside the clip take the silence value.
- Loudness: `audio_features_for_frames` first scales the clip so that its speech (the 20 ms blocks within
  30 dB of its loud blocks) sits at `speech_level_dbfs` RMS, so a quiet phone recording and a loud studio
  file drive the model alike. Digital silence stays silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_STEPS_PER_CHUNK = 4096  # bounds the STFT's working memory to ~30 MB whatever the clip length


@dataclass(frozen=True)
class AudioFeatureConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 320  # 20 ms: 50 feature steps per second, 2 per video frame at 25 fps
    n_mels: int = 80
    f_min: float = 50.0
    f_max: float = 7600.0
    window_steps: int = 16  # feature steps around each video frame
    log_floor: float = 1e-5
    log_offset: float = -5.0
    log_scale: float = 4.0
    speech_level_dbfs: (
        float | None
    ) = -23.0  # loudness of the speech after `normalize_speech_level`; None: as is

    def __post_init__(self) -> None:
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got {self.win_length} and {self.n_fft}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"need 0 < hop_length <= n_fft, got {self.hop_length} and {self.n_fft}")
        if not 0.0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, "
                f"got {self.f_min}, {self.f_max} and {self.sample_rate}"
            )
        if self.n_mels < 1 or self.window_steps < 1 or self.log_floor <= 0.0 or self.log_scale <= 0.0:
            raise ValueError("n_mels, window_steps, log_floor and log_scale must be positive")


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: AudioFeatureConfig) -> np.ndarray:
    """Triangular HTK-mel filters over the rfft bins.

    Returns:
        filterbank: np.ndarray  # [n_mels, n_fft // 2 + 1] float64; row m peaks (at 1) at mel_centers_hz[m]
    """
    bin_hz = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2))
    lower, center, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None] - lower) / (center - lower)
    falling = (upper - bin_hz[None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


def mel_centers_hz(config: AudioFeatureConfig) -> np.ndarray:
    """Centre frequency of each mel filter.

    Returns:
        centers: np.ndarray  # [n_mels] Hz, increasing
    """
    return mel_to_hz(np.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2))[1:-1]


def silence_feature_value(config: AudioFeatureConfig) -> float:
    """The normalised log-mel value of digital silence, also used for steps outside the clip."""
    return (math.log(config.log_floor) - config.log_offset) / config.log_scale


def log_mel_spectrogram(audio: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """Normalised log-mel spectrogram of a mono clip at `config.sample_rate` (see module docstring).

    Args:
        audio: np.ndarray  # [S] float, in [-1, 1]
    Returns:
        log_mel: np.ndarray  # [ceil(S / hop_length), n_mels] float32
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D [S], got shape {audio.shape}")
    hop, n_fft = config.hop_length, config.n_fft
    num_steps = -(-audio.size // hop)
    filterbank_t = mel_filterbank(config).T  # [n_fft // 2 + 1, n_mels]
    window = np.zeros(n_fft, dtype=np.float32)
    window_start = (n_fft - config.win_length) // 2
    window[window_start : window_start + config.win_length] = _periodic_hann(config.win_length)
    first_sample_offset = hop // 2 - n_fft // 2  # step k's FFT frame starts at sample k * hop + this

    log_mel = np.empty((num_steps, config.n_mels), dtype=np.float32)
    for chunk_start in range(0, num_steps, _STEPS_PER_CHUNK):
        chunk_end = min(chunk_start + _STEPS_PER_CHUNK, num_steps)
        lo = chunk_start * hop + first_sample_offset
        hi = (chunk_end - 1) * hop + first_sample_offset + n_fft
        segment = np.zeros(hi - lo, dtype=np.float32)
        segment[max(0, -lo) : min(hi, audio.size) - lo] = audio[max(lo, 0) : min(hi, audio.size)]
        frames = np.lib.stride_tricks.sliding_window_view(segment, n_fft)[::hop] * window  # [K, n_fft]
        spectrum = np.fft.rfft(frames, axis=-1)
        power = spectrum.real**2 + spectrum.imag**2  # [K, n_fft // 2 + 1]
        mel = power @ filterbank_t
        log_mel[chunk_start:chunk_end] = (
            np.log(np.maximum(mel, config.log_floor)) - config.log_offset
        ) / config.log_scale
    return log_mel


def frame_audio_windows(
    log_mel: np.ndarray, num_frames: int, fps: float, config: AudioFeatureConfig, *, fill: float | None = None
) -> np.ndarray:
    """Gather the `window_steps` feature steps centred on each video frame (see module docstring).

    Args:
        log_mel: np.ndarray  # [T, C] per-step features, from `log_mel_spectrogram` (C = n_mels) or another
            per-step feature at the same hop (`fill` given)
        fill: the value of steps outside the clip; default the log-mel of silence
    Returns:
        windows: np.ndarray  # [num_frames, window_steps, C] float32; steps outside [0, T) are `fill`
    """
    if log_mel.ndim != 2 or (fill is None and log_mel.shape[1] != config.n_mels):
        raise ValueError(f"log_mel must be [T, {config.n_mels}], got shape {log_mel.shape}")
    if num_frames < 0 or fps <= 0:
        raise ValueError(f"need num_frames >= 0 and fps > 0, got {num_frames} and {fps}")
    num_steps, width = log_mel.shape[0], config.window_steps
    frame_index = np.arange(num_frames, dtype=np.float64)
    centre_steps = (2.0 * frame_index + 1.0) * config.sample_rate / (2.0 * fps * config.hop_length)
    starts = np.floor(centre_steps - width / 2 + 0.5).astype(np.int64)  # [F]
    channels = log_mel.shape[1]
    if num_frames == 0:
        return np.zeros((0, width, channels), dtype=np.float32)
    pad_before = max(0, -int(starts[0]))
    pad_after = max(0, int(starts[-1]) + width - num_steps)
    silence = np.float32(silence_feature_value(config) if fill is None else fill)
    padded = np.concatenate(
        [
            np.full((pad_before, channels), silence, dtype=np.float32),
            log_mel.astype(np.float32, copy=False),
            np.full((pad_after, channels), silence, dtype=np.float32),
        ]
    )
    return padded[starts[:, None] + pad_before + np.arange(width)]


def normalize_speech_level(audio: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """[S] -> [S]: the clip scaled so that its active blocks have `config.speech_level_dbfs` RMS (gain limited
    to +-30 dB); unchanged when the level is None or the clip has no block above -70 dBFS."""
    if config.speech_level_dbfs is None or len(audio) == 0:
        return audio
    block = config.hop_length
    count = len(audio) // block
    if count == 0:
        return audio
    blocks = audio[: count * block].astype(np.float64).reshape(count, block)
    level = 10 * np.log10(np.mean(blocks**2, axis=1) + 1e-20)
    loud = np.percentile(level, 95)
    active = (level > loud - 30.0) & (level > -70.0)
    if not active.any():
        return audio
    speech_db = 10 * np.log10(np.mean(blocks[active] ** 2))
    gain_db = float(np.clip(config.speech_level_dbfs - speech_db, -30.0, 30.0))
    return (audio * 10 ** (gain_db / 20)).astype(np.float32)


def audio_features_for_frames(
    audio: np.ndarray, num_frames: int, fps: float, config: AudioFeatureConfig = AudioFeatureConfig()
) -> np.ndarray:
    """Per-video-frame log-mel windows of a mono clip at `config.sample_rate`.

    Args:
        audio: np.ndarray  # [S] float, in [-1, 1]
    Returns:
        windows: np.ndarray  # [num_frames, window_steps, n_mels] float32
    """
    audio = normalize_speech_level(np.asarray(audio, dtype=np.float32), config)
    return frame_audio_windows(log_mel_spectrogram(audio, config), num_frames, fps, config)


def num_video_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """Number of video frames at `fps` that `num_samples` of audio spans, rounded to nearest (halves up)."""
    return int(math.floor(num_samples * fps / sample_rate + 0.5))


def _periodic_hann(length: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)
