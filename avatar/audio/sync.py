"""The offset between a capture's audio and its mouth motion, so that training pairs each frame with its sound.

Lips move ahead of the sound they make (they open before the vowel), and phone and archive videos often carry
an audio delay of their own; for the Obama clip of the test media the mouth leads the audio by about 240 ms.
A model fitted with each frame's own audio window then has to predict the mouth from audio it has not heard
yet, and driving it with new audio shows the mouth out of step. `audio_offset_frames` finds the shift that
best lines up the tracked mouth opening with the speech loudness; the fit pairs frame i with the audio of
frame i + offset, so a driven mouth opens with its sound.
"""

from __future__ import annotations

import numpy as np


def speech_loudness(driving_features: np.ndarray) -> np.ndarray:
    """Per-frame loudness of normalised audio windows (`normalize_audio_windows`): the mean over the mel bands
    of the frame's own two feature steps, in the middle of its window.

    Args:
        driving_features: np.ndarray  # [F, steps, n_mels]
    Returns:
        loudness: np.ndarray  # [F]
    """
    middle = driving_features.shape[1] // 2
    return driving_features[:, middle - 1 : middle + 1].mean(axis=(1, 2))


def audio_offset_frames(
    mouth_openness: np.ndarray, loudness: np.ndarray, max_offset: int = 10, min_correlation: float = 0.15
) -> tuple[int, float]:
    """The shift in frames (audio index = frame index + offset) maximising the correlation of mouth opening
    and loudness over the frames both cover, searched in [-max_offset, max_offset]; 0 when no shift reaches
    `min_correlation` (a clip whose mouth does not follow its audio says nothing about the offset).

    Args:
        mouth_openness: np.ndarray  # [F]
        loudness: np.ndarray  # [F]
    Returns:
        offset: int
        correlation: float  # the best correlation found (0.0 when none is positive)
    """
    mouth_openness = np.asarray(mouth_openness, dtype=np.float64)
    loudness = np.asarray(loudness, dtype=np.float64)
    if mouth_openness.shape != loudness.shape or mouth_openness.ndim != 1:
        raise ValueError(f"need two [F] arrays, got {mouth_openness.shape} and {loudness.shape}")
    count = len(loudness)
    best, best_correlation = 0, 0.0
    for offset in range(-max_offset, max_offset + 1):
        overlap = count - abs(offset)
        if overlap < 3 * max_offset or overlap < 3:
            continue
        mouth = mouth_openness[max(0, -offset) : max(0, -offset) + overlap]
        sound = loudness[max(0, offset) : max(0, offset) + overlap]
        if mouth.std() == 0 or sound.std() == 0:
            continue
        correlation = float(np.corrcoef(mouth, sound)[0, 1])
        if correlation > best_correlation:
            best, best_correlation = offset, correlation
    return (best if best_correlation >= min_correlation else 0), best_correlation


def shift_frames(values: np.ndarray, offset: int) -> np.ndarray:
    """values[clip(i + offset, 0, F - 1)] for every frame i: [F, ...] -> [F, ...]."""
    count = len(values)
    return values[np.clip(np.arange(count) + offset, 0, count - 1)]
