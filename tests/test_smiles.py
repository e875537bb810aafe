from __future__ import annotations

import numpy as np

from avatar.face.smiles import SMILE_LANDMARKS, smile_score, smiling_frames


def _mouths(gap: np.ndarray, width: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """[F] inner-lip gaps, mouth widths and corner lifts -> [F, 5, 3] `SMILE_LANDMARKS` (head frame, y down)."""
    points = np.zeros((len(gap), len(SMILE_LANDMARKS), 3))
    points[:, 0, 0], points[:, 1, 0] = -width / 2, width / 2
    points[:, 0, 1] = points[:, 1, 1] = 0.01 - lift  # the corners, below the top of the upper lip
    points[:, 3, 1] = 0.005 - gap / 2  # inner upper lip
    points[:, 4, 1] = 0.005 + gap / 2  # inner lower lip
    return points


def _talking(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A talking mouth: opening widens it (and lowers its corners a little), plus a little of each on its own."""
    gap = np.abs(0.008 * rng.standard_normal(count))
    width = 0.05 + 0.6 * gap + 0.0005 * rng.standard_normal(count)
    lift = -0.02 * gap + 0.0005 * rng.standard_normal(count)
    return gap, width, lift


def test_the_widest_openings_of_speech_are_not_smiles_and_a_held_smile_is():
    rng = np.random.default_rng(0)
    gap, width, lift = _talking(rng, 300)
    width[200:230] += 0.006  # a smile held for 30 frames: the corners out and up, whatever the lips say
    lift[200:230] += 0.004
    frames = np.arange(300)
    smiling = smiling_frames(smile_score(_mouths(gap, width, lift), frames), frames)
    assert smiling[200:230].all()
    widest = np.argsort(np.where(np.arange(300) < 200, gap, -1.0))[-20:]  # of the frames that do not smile
    assert smiling[widest].mean() < 0.2
    # the width alone would take the widest openings for smiles
    by_width = smiling_frames(width, frames)
    assert by_width[widest].mean() > 0.8


def test_narrowed_or_lowered_corners_are_not_smiles():
    rng = np.random.default_rng(1)
    gap, width, lift = _talking(rng, 300)
    width[100:130] -= 0.006  # pursed lips
    lift[150:180] -= 0.004  # a frown
    frames = np.arange(300)
    smiling = smiling_frames(smile_score(_mouths(gap, width, lift), frames), frames)
    assert not smiling[100:130].any() and not smiling[150:180].any()


def test_the_fit_and_spread_come_from_the_frames_given_and_a_still_mouth_smiles_nowhere():
    rng = np.random.default_rng(2)
    gap, width, lift = _talking(rng, 200)
    width[150:], lift[150:] = width[150:] + 0.01, lift[150:] + 0.01  # smiling after frame 150
    points = _mouths(gap, width, lift)
    first = np.arange(150)
    assert smiling_frames(smile_score(points, first), first)[150:].all()
    still = _mouths(np.zeros(30), np.full(30, 0.05), np.zeros(30))
    assert not smile_score(still, np.arange(30)).any()
    assert not smiling_frames(smile_score(still, np.arange(30)), np.arange(30)).any()
