"""Speaker- and recording-independent driving features: a clip's log-mel windows normalised per mel band.

The log-mel windows of `avatar/audio/features.py` still carry the voice and the room: a speaker's pitch
harmonics, the microphone's frequency response, the noise in the pauses, a telephone or archive recording's
missing high band. A model fitted to one clip then reads another voice's features as something it never saw
(for example an archive recording's hiss as continuous speech, so the mouth hangs half open). Before the
model sees them, every clip's windows, in training and when driving with new audio, go through
`normalize_audio_windows`:

1. Cepstral liftering: each step's 80-band log spectrum keeps only its `cepstral_coefficients` lowest DCT-II
   coefficients, the spectral envelope (formants) without the pitch harmonics.
2. Per-band range: in each band, the clip's `floor_percentile` (its pauses: room noise or digital silence)
   maps to 0 and its `peak_percentile` (loud speech) to 1; a band with less than `min_range` between them
   (one the recording lacks) is scaled as if it had `min_range`, so it stays near 0 instead of blowing up
   its noise. Values are clipped to [`clip_low`, `clip_high`].

A silent clip is 0 everywhere, as are the pauses of a speech clip, so silence drives the mouth as the
capture's pauses did. `augment_audio_windows` perturbs normalised windows during training (band gains,
a raised floor, a lost high band, noise) so that the model does not depend on details that differ between
recordings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class AudioNormalization:
    cepstral_coefficients: int = 20  # DCT-II coefficients kept of each step's log-mel spectrum
    floor_percentile: float = 10.0  # of each band over the clip: maps to 0
    peak_percentile: float = 95.0  # of each band over the clip: maps to 1
    min_range: float = 0.5  # log-mel units (1 unit = 17.4 dB): the smallest floor-to-peak range divided by
    clip_low: float = -0.5
    clip_high: float = 1.5

    def __post_init__(self) -> None:
        if self.cepstral_coefficients < 1:
            raise ValueError(f"cepstral_coefficients must be positive, got {self.cepstral_coefficients}")
        if not 0.0 <= self.floor_percentile < self.peak_percentile <= 100.0:
            raise ValueError(
                f"need 0 <= floor_percentile < peak_percentile <= 100, "
                f"got {self.floor_percentile} and {self.peak_percentile}"
            )
        if self.min_range <= 0.0 or self.clip_low >= self.clip_high:
            raise ValueError("need min_range > 0 and clip_low < clip_high")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> AudioNormalization:
        return AudioNormalization(**values)


ROUNDING_FLOOR = 1e-5  # normalised units (0: a band's floor, 1: its peak): rounding, not sound


def dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II: coefficients = matrix @ signal.

    Returns:
        matrix: np.ndarray  # [size, size] float64, matrix @ matrix.T = identity
    """
    n = np.arange(size)
    matrix = np.cos(np.pi / size * (n[None, :] + 0.5) * n[:, None]) * np.sqrt(2.0 / size)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def lifter(log_mel: np.ndarray, coefficients: int) -> np.ndarray:
    """[..., n_mels] -> [..., n_mels]: each spectrum smoothed to its `coefficients` lowest DCT-II terms."""
    size = log_mel.shape[-1]
    dct = dct_matrix(size)
    keep = dct[: min(coefficients, size)]
    projection = (keep.T @ keep).astype(np.float32)  # symmetric
    return log_mel.astype(np.float32, copy=False) @ projection


def normalize_audio_windows(
    windows: np.ndarray, config: AudioNormalization = AudioNormalization()
) -> np.ndarray:
    """One clip's log-mel windows -> the model's driving features (see the module docstring).

    Args:
        windows: np.ndarray  # [F, steps, n_mels] float, from `audio_features_for_frames`
    Returns:
        features: np.ndarray  # [F, steps, n_mels] float32, pauses near 0, loud speech near 1
    """
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3:
        raise ValueError(f"windows must be [F, steps, n_mels], got shape {windows.shape}")
    if windows.shape[0] == 0:
        return windows.copy()
    smooth = lifter(windows, config.cepstral_coefficients)
    steps = smooth.reshape(-1, smooth.shape[-1])
    floor = np.percentile(steps, config.floor_percentile, axis=0)
    peak = np.percentile(steps, config.peak_percentile, axis=0)
    scale = np.maximum(peak - floor, config.min_range)
    features = np.clip((smooth - floor) / scale, config.clip_low, config.clip_high).astype(np.float32)
    # The lifter's float32 product rounds differently from row to row on some BLAS builds, so a constant band
    # (digital silence) lands within ~1e-6 of its floor instead of on it: snap that to the silence it is.
    features[np.abs(features) < ROUNDING_FLOOR] = 0.0
    return features


@dataclass(frozen=True)
class AudioAugmentation:
    """Random perturbations of normalised windows, drawn once per training sample (all its W windows alike)."""

    probability: float = 0.5  # of perturbing a sample at all
    band_gain_std: float = 0.15  # std of a smooth per-band log-gain curve (4 cosine terms)
    floor_raise_max: float = 0.25  # the floor is raised to U(0, this): noise filling the pauses
    band_cut_probability: float = 0.3  # of losing every band above a random cutoff (a band-limited recording)
    noise_std: float = 0.03


def augment_audio_windows(
    features: Tensor, generator: torch.Generator, config: AudioAugmentation = AudioAugmentation()
) -> Tensor:
    """[B, W, steps, n_mels] normalised windows -> the same, perturbed per sample (see `AudioAugmentation`).

    `generator` lives on the CPU; the random draws are moved to `features`' device."""
    batch, n_mels = features.shape[0], features.shape[-1]
    draw = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    perturb = (draw(batch) < config.probability).float()
    bands = torch.linspace(0.0, torch.pi, n_mels)
    cosines = torch.stack([torch.cos(k * bands) for k in range(4)])  # [4, n_mels]
    log_gain = (torch.randn(batch, 4, generator=generator) * config.band_gain_std) @ cosines  # [B, n_mels]
    floor = draw(batch) * config.floor_raise_max
    cutoff = (n_mels * (0.5 + 0.5 * draw(batch))).long()
    cut = (draw(batch) < config.band_cut_probability)[:, None] & (
        torch.arange(n_mels)[None] >= cutoff[:, None]
    )
    noise = torch.randn(features.shape, generator=generator) * config.noise_std

    device = features.device
    shape = (batch, 1, 1, n_mels)
    augmented = features * torch.exp(log_gain).to(device).view(shape)
    augmented = torch.maximum(augmented, floor.to(device).view(batch, 1, 1, 1))
    augmented = torch.where(cut.to(device).view(shape), torch.zeros_like(augmented), augmented)
    augmented = augmented + noise.to(device)
    keep = perturb.to(device).view(batch, 1, 1, 1)
    return keep * augmented + (1 - keep) * features
