from __future__ import annotations

import numpy as np

from avatar.face.landmarks import EYE_OUTER_CORNERS, NUM_LANDMARKS
from avatar.face.smiles import MOUTH_OUTER_CORNERS, mouth_width, smiling_frames


def _faces(mouth_widths: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """[F] mouth widths (eye distance 1) -> [F, 478, 3] landmarks with those mouth and eye corners."""
    landmarks = np.zeros((len(mouth_widths), NUM_LANDMARKS, 3))
    landmarks[:, EYE_OUTER_CORNERS[0], 0], landmarks[:, EYE_OUTER_CORNERS[1], 0] = -0.5, 0.5
    landmarks[:, MOUTH_OUTER_CORNERS[0], :2] = np.stack([-mouth_widths / 2, np.full_like(mouth_widths, 1)], 1)
    landmarks[:, MOUTH_OUTER_CORNERS[1], :2] = np.stack([mouth_widths / 2, np.full_like(mouth_widths, 1)], 1)
    return landmarks * scale


def test_the_mouth_width_is_over_the_eye_distance_so_the_heads_distance_does_not_change_it():
    widths = np.array([0.6, 0.7, 0.9])
    np.testing.assert_allclose(mouth_width(_faces(widths)), widths)
    np.testing.assert_allclose(mouth_width(_faces(widths, scale=3.7)), widths)


def test_widened_mouths_are_smiles_and_speech_around_the_usual_width_is_not():
    rng = np.random.default_rng(0)
    widths = 0.7 + 0.02 * rng.standard_normal(200)  # talking: the width varies a little
    widths[120:150] += 0.15  # a smile held for 30 frames
    smiling = smiling_frames(mouth_width(_faces(widths)), np.arange(200))
    assert smiling[120:150].all()
    assert smiling[:120].mean() < 0.1 and smiling[150:].mean() < 0.1
    narrower = widths.copy()
    narrower[120:150] -= 0.3  # pursed lips are not a smile
    assert not smiling_frames(narrower, np.arange(200))[120:150].any()


def test_the_median_and_spread_come_from_the_frames_given_and_a_still_mouth_smiles_nowhere():
    widths = np.r_[np.full(50, 0.7), np.linspace(0.7, 1.0, 50)]
    assert smiling_frames(widths, np.arange(50)).sum() == 0  # the first 50 do not vary
    assert smiling_frames(widths, np.arange(100))[-10:].all()
    assert not smiling_frames(np.full(30, 0.7), np.arange(30)).any()
