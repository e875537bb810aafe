"""The model's driving features: a clip's normalised log-mel windows, and beside them the clip's phones.

A log-mel spectrum still carries the voice it was spoken in; a model fitted to a minute of one person hears
another voice's vowels as something new. Phones do not depend on the voice: pocketsphinx (whose en-US models
ship inside its wheel) recognises and force-aligns them (`avatar.audio.phones`), and each feature step gets a
one-hot of the phone spoken at its centre (`phone_activity`; zeros in silence). The phone channels are
windowed like the log-mel ones and appended to them: [F, steps, n_mels + PHONE_CLASSES].

Audio that cannot be aligned (not English, not speech, too noisy) gets zero phone channels, which the fit
trains for (`TrainSettings.phone_dropout`): the log-mel channels alone then drive the mouth, so no language
depends on the aligner.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from avatar.audio.features import AudioFeatureConfig, frame_audio_windows
from avatar.audio.normalization import AudioNormalization, normalize_audio_windows
from avatar.audio.phones import ARPABET, PhoneSegment, align_phones
from avatar.core.errors import AvatarError

_log = logging.getLogger(__name__)

PHONE_CLASSES = len(ARPABET)  # 39 ARPAbet phones; silence is all zeros


def phone_activity(phones: Sequence[PhoneSegment], num_steps: int, config: AudioFeatureConfig) -> np.ndarray:
    """One-hot of the phone at each feature step's centre, (k + 0.5) * hop / sample_rate seconds.

    Returns:
        activity: np.ndarray  # [num_steps, PHONE_CLASSES] float32, a row of zeros in silence
    """
    centres = (np.arange(num_steps) + 0.5) * config.hop_length / config.sample_rate
    activity = np.zeros((num_steps, PHONE_CLASSES), np.float32)
    for segment in phones:
        if segment.phone not in ARPABET:
            continue
        lo, hi = np.searchsorted(centres, [segment.start_s, segment.end_s], side="left")
        activity[lo:hi, ARPABET.index(segment.phone)] = 1.0
    return activity


@dataclass(frozen=True)
class PhoneWindows:
    windows: np.ndarray  # [F, steps, PHONE_CLASSES] float32
    note: str | None  # why they are all zeros, when the audio could not be aligned


def phone_windows(audio: np.ndarray, num_frames: int, fps: float, config: AudioFeatureConfig) -> PhoneWindows:
    """Per-video-frame windows of phone activity, laid out as `frame_audio_windows` lays out the log-mel steps.

    Args:
        audio: np.ndarray  # [S] mono at config.sample_rate
    """
    num_steps = -(-len(audio) // config.hop_length)
    note = None
    try:
        phones: Sequence[PhoneSegment] = align_phones(audio, config.sample_rate)
    except AvatarError as error:
        phones, note = (), str(error)
        _log.info("no phones for the driving features: %s", error)
    activity = phone_activity(phones, num_steps, config)
    windows = frame_audio_windows(activity, num_frames, fps, config, fill=0.0)
    return PhoneWindows(windows, note)


def driving_features(
    audio: np.ndarray,
    mel_windows: np.ndarray,
    fps: float,
    config: AudioFeatureConfig,
    normalization: AudioNormalization,
    *,
    phones: bool,
) -> np.ndarray:
    """A clip's driving features: its normalised log-mel windows and, with `phones`, its phone windows.

    Args:
        audio: np.ndarray  # [S] mono at config.sample_rate, the clip the windows were computed from
        mel_windows: np.ndarray  # [F, steps, n_mels] from `audio_features_for_frames(audio, F, fps, config)`
    Returns:
        features: np.ndarray  # [F, steps, n_mels (+ PHONE_CLASSES)] float32
    """
    mel = normalize_audio_windows(mel_windows, normalization)
    if not phones:
        return mel
    return np.concatenate([mel, phone_windows(audio, len(mel), fps, config).windows], axis=-1)
