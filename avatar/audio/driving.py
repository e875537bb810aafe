"""The model's driving features: a clip's normalised log-mel windows, and beside them the clip's phones.

A log-mel spectrum still carries the voice it was spoken in; a model fitted to a minute of one person hears
another voice's vowels as something new. Phones do not depend on the voice: pocketsphinx (whose en-US models
ship inside its wheel) recognises and force-aligns them (`avatar.audio.phones`), and each feature step gets a
one-hot of the phone spoken at its centre (`phone_activity`; zeros in silence). The phone channels are
windowed like the log-mel ones and appended to them: [F, steps, n_mels + PHONE_CLASSES].

Audio that cannot be aligned (not English, not speech, too noisy) gets zero phone channels, which the fit
trains for (`TrainSettings.phone_dropout`): the log-mel channels alone then drive the mouth, so no language
depends on the aligner. The other way round, `TrainSettings.log_mel_dropout` trains the phones to drive the
mouth alone, and a window with phones is predicted from both and from its phones alone
(`DeformationField.predicted_motion`): another speaker's voice then moves the mouth as the phones say.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from avatar.audio.features import AudioFeatureConfig, frame_audio_windows
from avatar.audio.normalization import AudioNormalization, normalize_audio_windows
from avatar.audio.phones import ARPABET, AlignedSpeech, PhoneSegment

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


def phone_windows(
    speech: AlignedSpeech, num_frames: int, fps: float, config: AudioFeatureConfig
) -> np.ndarray:
    """Per-video-frame windows of phone activity, laid out as `frame_audio_windows` lays out the log-mel steps;
    all zeros when the speech has no phones.

    Returns:
        windows: np.ndarray  # [num_frames, steps, PHONE_CLASSES] float32
    """
    num_steps = math.ceil(num_frames / fps * config.sample_rate / config.hop_length) + config.window_steps
    activity = phone_activity(speech.phones or (), num_steps, config)  # covers every step a window reads
    return frame_audio_windows(activity, num_frames, fps, config, fill=0.0)


def driving_features(
    mel_windows: np.ndarray,
    fps: float,
    config: AudioFeatureConfig,
    normalization: AudioNormalization,
    *,
    speech: AlignedSpeech | None,
) -> np.ndarray:
    """A clip's driving features: its normalised log-mel windows and, unless `speech` is None (a model without
    phone channels), the windows of its phones.

    Args:
        mel_windows: np.ndarray  # [F, steps, n_mels] from `audio_features_for_frames(audio, F, fps, config)`
        speech: the clip's phones (`align_speech` of the same audio)
    Returns:
        features: np.ndarray  # [F, steps, n_mels (+ PHONE_CLASSES)] float32
    """
    mel = normalize_audio_windows(mel_windows, normalization)
    if speech is None:
        return mel
    if speech.phones is None:
        _log.info("no phones for the driving features: %s", speech.note)
    return np.concatenate([mel, phone_windows(speech, len(mel), fps, config)], axis=-1)
