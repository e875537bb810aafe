"""Smiles: frames whose mouth is widened beyond the person's usual, which the voice does not predict.

A person who smiles or laughs while talking pulls the mouth corners apart and shows the teeth over whatever the
lips articulate, and nothing in the audio says when. A mouth-motion path trained on those frames learns the
smile from the voice's incidental features. On a real Spanish clip of a man who grins through his sentences
(20 s), that made the mouth driven by English audio open on closures and close on vowels: viseme AUC at lag 0
0.24 and 0.36 on LJ001, two seeds, the motion path alone. Leaving out his frames more than half a standard
deviation wider than his median (108 of 452) gave 0.72 and 0.82, and obama_speech_24s went from 0.61 and 0.68
to 0.78 and 0.87; the English clips kept their scores (phone_talker, 130 of 450 frames left out: LJ001 0.89 and
0.89 before, 0.92 and 0.88 after; Obama, 44 of 450: 0.95 and 0.95 before, 0.96 and 0.96 after). Fitted and
rendered (tiny preset), the Spanish avatar's LJ001 went from 0.24 to 0.53 and obama_speech_24s from 0.51 to 0.60:
its closures now close, though its open vowels open little.

`smiling_frames` finds them from the mouth's width (`mouth_width`): more than `threshold` standard deviations
above its median over the clip's training frames. The fit leaves them out of the mouth-motion loss and always
renders them with their tracked motion, so that the image loss does not teach the audio's prediction the smile
either, while the head still learns how the smile looks.
"""

from __future__ import annotations

import numpy as np

from avatar.face.landmarks import EYE_OUTER_CORNERS

MOUTH_OUTER_CORNERS = (61, 291)
STILL = 1e-9  # a spread of the width below this: the mouth does not vary
SMILE_THRESHOLD = 0.5  # standard deviations of the mouth's width above its median


def mouth_width(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, >=2] -> [...] the distance between the outer mouth corners over that between the eyes' outer
    corners, so that it does not change with the head's distance to the camera."""
    points = landmarks[..., :2]
    mouth = np.linalg.norm(
        points[..., MOUTH_OUTER_CORNERS[0], :] - points[..., MOUTH_OUTER_CORNERS[1], :], axis=-1
    )
    eyes = np.linalg.norm(
        points[..., EYE_OUTER_CORNERS[0], :] - points[..., EYE_OUTER_CORNERS[1], :], axis=-1
    )
    return mouth / np.maximum(eyes, 1e-6)


def smiling_frames(
    width: np.ndarray, frames: np.ndarray, *, threshold: float = SMILE_THRESHOLD
) -> np.ndarray:
    """Which frames smile (module docstring).

    Args:
        width: np.ndarray  # [F] `mouth_width` of every frame of the clip
        frames: np.ndarray  # [T] int, the frames whose widths set the median and the spread
        threshold: standard deviations of the width above its median
    Returns:
        smiling: np.ndarray  # [F] bool; none where the frames' width does not vary
    """
    width = np.asarray(width, dtype=np.float64)
    usual = width[np.asarray(frames, dtype=int)]
    spread = float(usual.std()) if len(usual) else 0.0
    if spread < STILL:
        return np.zeros(len(width), dtype=bool)
    return (width - float(np.median(usual))) / spread > threshold
