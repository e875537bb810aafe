"""Smiles: frames whose mouth corners are pulled out and up beyond what the lips' opening moves them, which the
voice does not predict.

A person who smiles or laughs while talking pulls the mouth corners apart and up and shows the teeth over
whatever the lips articulate, and nothing in the audio says when. A mouth-motion path trained on those frames
learns the smile from the voice's incidental features. On a real Spanish clip of a man who grins through his
sentences (20 s), that made the mouth driven by English audio open on closures and close on vowels: viseme AUC
at lag 0 0.24 and 0.36 on LJ001, two seeds, the motion path alone.

Opening the mouth moves the corners too: the mouth widens as the jaw drops (for that Spanish speaker the
width follows the opening at r 0.52) and the corners fall with the lower lip. A first criterion, the width
alone more than half a standard deviation above its median, took the widest openings for smiles: it left out
78 % of the Spanish clip's 20 % widest openings and 60 % of phone_talker's, and the Spanish avatar learned to
talk with a half-shut mouth. `smile_score` measures what the opening does not explain: the width and the
corners' lift, each less its linear fit on the inner-lip gap over the training frames and over its spread
there, summed. `smiling_frames` flags the frames more than `SMILE_THRESHOLD` standard deviations above its
median: 67 of the Spanish clip's 452 training frames, 54 of Obama's 450, 70 of phone_talker's 450 and 207 of
the 1349 of a 60 s clip of another English speaker.

Measured on the motion path alone (the fit's motion loss and batches, 1500 steps, no rendering, seeds 0 and 1;
viseme AUC at lag 0 of the predicted inner-lip gap, the mean over five English audios: LJ001,
obama_speech_24s and three other speakers; held-out r of the predicted against the tracked gap), the width
criterion -> this one:

| capture | English audio, mean AUC | held-out r |
| --- | --- | --- |
| Spanish, 20 s | 0.72, 0.84 -> 0.65, 0.75 | 0.13, 0.21 -> **0.61, 0.68** |
| another English speaker, 60 s (seed 0) | 0.92 -> 0.91 | 0.60 -> **0.70** |
| phone_talker, 20 s | 0.93, 0.91 -> 0.92, 0.94 | 0.79, 0.82 -> 0.76, 0.79 |
| Obama, 20 s | 0.95, 0.95 -> 0.96, 0.95 | 0.82, 0.80 -> 0.79, 0.73 |

Half a standard deviation with this score left out 30 % of every clip and cost Obama's held-out r 0.2 (38
of its 50 held-out frames lifted their corners more than that); no smile handling at all gave the Spanish clip
0.32 and 0.55 held-out and 0.24 and 0.36 on LJ001.

Fitted and rendered (tiny preset, `avatar eval`), the width criterion -> this one: the Spanish avatar's held-out
mouth r went from 0.26 to 0.64 and obama_speech_24s from 0.60 to 0.74 (LJ001 0.53 -> 0.48, on 11 closures);
Obama's LJ001 0.87 -> 0.96, obama_speech_24s 0.91 -> 0.91, held-out 0.87 -> 0.86; phone_talker's 0.91 -> 0.96,
0.93 -> 0.94, 0.83 -> 0.81; the 60 s clip's 0.98 -> 0.99, 0.90 -> 0.93, 0.62 -> 0.63.

The fit leaves the smiling frames out of the mouth-motion loss and always renders them with their tracked
motion, so that the image loss does not teach the audio's prediction the smile either, while the head still
learns how the smile looks.
"""

from __future__ import annotations

import numpy as np

# the outer mouth corners, the top of the upper lip, the middles of the inner upper and lower lips
SMILE_LANDMARKS = (61, 291, 0, 13, 14)
STILL = 1e-9  # a spread below this: the measure does not vary
SMILE_THRESHOLD = 1.0  # standard deviations of the smile score above its median


def smile_score(points: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """How far each frame's mouth corners are pulled apart and up beyond what its opening moves them (module
    docstring).

    Args:
        points: np.ndarray  # [F, 5, 3] `SMILE_LANDMARKS` in the head frame (x right, y down)
        frames: np.ndarray  # [T] int, the frames on which the opening's effect is fitted
    Returns:
        score: np.ndarray  # [F] the residual width plus the residual lift, each over its spread on `frames`
    """
    points = np.asarray(points, dtype=np.float64)
    frames = np.asarray(frames, dtype=int)
    left, right, lip_top, inner_upper, inner_lower = (points[:, k] for k in range(len(SMILE_LANDMARKS)))
    gap = inner_lower[:, 1] - inner_upper[:, 1]
    width = np.abs(right[:, 0] - left[:, 0])
    lift = lip_top[:, 1] - 0.5 * (left[:, 1] + right[:, 1])  # grows as the corners rise (y points down)
    design = np.stack([gap, np.ones_like(gap)], axis=1)
    score = np.zeros(len(points))
    for measure in (width, lift):
        fit, *_ = np.linalg.lstsq(design[frames], measure[frames], rcond=None)
        residual = measure - design @ fit
        spread = float(residual[frames].std()) if len(frames) else 0.0
        if spread > STILL:
            score += residual / spread
    return score


def smiling_frames(
    score: np.ndarray, frames: np.ndarray, *, threshold: float = SMILE_THRESHOLD
) -> np.ndarray:
    """Which frames smile: `score` more than `threshold` standard deviations above its median over `frames`.

    Args:
        score: np.ndarray  # [F] `smile_score` of every frame of the clip
        frames: np.ndarray  # [T] int, the frames whose scores set the median and the spread
        threshold: standard deviations of the score above its median
    Returns:
        smiling: np.ndarray  # [F] bool; none where the frames' score does not vary
    """
    score = np.asarray(score, dtype=np.float64)
    usual = score[np.asarray(frames, dtype=int)]
    spread = float(usual.std()) if len(usual) else 0.0
    if spread < STILL:
        return np.zeros(len(score), dtype=bool)
    return (score - float(np.median(usual))) / spread > threshold
