from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.model.landmark_motion import (
    eyelid_rig,
    landmark_displacements,
    mouth_motion_targets,
    rest_motion,
    skin_offsets,
)

K = np.array([[500.0, 0, 256], [0, 500.0, 256], [0, 0, 1]])


def _project(points_head, rotation, translation):
    camera = points_head @ rotation.T + translation
    return camera[:, :2] / camera[:, 2:] * 500.0 + 256.0


def test_displacements_recover_an_image_plane_motion_of_the_lips():
    rng = np.random.default_rng(0)
    canonical = rng.normal(scale=0.05, size=(478, 3))
    rotations = Rotation.from_euler("xyz", [[0.1, -0.3, 0.05], [0.0, 0.2, 0.0]]).as_matrix()
    translations = np.array([[0.01, -0.02, 0.6], [0.0, 0.0, 0.5]])
    moved = canonical.copy()
    lips = [MOUTH_AND_JAW.index(i) for i in (14, 17)]
    motion_camera = np.array([0.0, 0.004, 0.0])  # the lower lip drops 4 mm in the image plane
    landmarks = np.zeros((2, 478, 3))
    expected = np.zeros((2, len(MOUTH_AND_JAW), 3))
    for frame in range(2):
        moved = canonical.copy()
        shift_head = rotations[frame].T @ motion_camera
        moved[[14, 17]] += shift_head
        landmarks[frame, :, :2] = _project(moved, rotations[frame], translations[frame])
        expected[frame, lips] = shift_head
    displacements = landmark_displacements(landmarks, rotations, translations, K, canonical)
    assert displacements.shape == (2, len(MOUTH_AND_JAW), 3)
    np.testing.assert_allclose(displacements, expected, atol=2e-5)  # 2e-5 m: first order in 4 mm / 0.5 m


def test_skinning_moves_gaussians_with_their_landmarks_and_leaves_far_ones():
    anchors = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]])
    motion = torch.tensor([[[0.0, 0.003, 0.0], [0.0, -0.002, 0.0]]])  # [B=1, J=2, 3]
    means = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.025, 0.0, 0.0], [0.3, 0.0, 0.0]])
    offsets = skin_offsets(means, anchors, motion, sigma=0.006)
    assert offsets.shape == (1, 4, 3)
    torch.testing.assert_close(offsets[0, 0], motion[0, 0], atol=1e-6, rtol=0)  # on a landmark: its motion
    torch.testing.assert_close(offsets[0, 1], motion[0, 1], atol=1e-6, rtol=0)
    assert offsets[0, 2].abs().max() < 1e-5  # 4 sigma from both: almost still
    assert offsets[0, 3].abs().max() == 0.0


def test_targets_keep_articulation_and_drop_slow_drift():
    frames = np.arange(2000)
    articulation = 0.003 * np.sin(2 * np.pi * frames / 8.0)  # 3 Hz at 25 fps
    articulation[1000:1075] = -0.004  # a 3 s pause with the mouth closed
    drift = 0.004 * np.sin(2 * np.pi * frames / 2000)  # 4 mm over 80 s: pose-fitting residue
    displacements = np.zeros((2000, 2, 3), np.float32)
    displacements[:, 0, 1] = articulation + drift
    targets = mouth_motion_targets(displacements)
    away_from_pause = np.r_[130:800, 1300:1870]
    error = targets[away_from_pause, 0, 1] - articulation[away_from_pause]
    assert np.abs(error).max() < 0.0006
    assert targets[1000:1075, 0, 1].mean() < -0.0025  # the pause stays (mostly) closed
    assert np.abs(targets[:, 1]).max() == 0.0


def test_rest_motion_is_the_mouth_in_the_quietest_frames():
    targets = np.zeros((100, 2, 3), np.float32)
    targets[:, 0, 1] = np.linspace(-0.004, 0.004, 100)  # the louder, the more open
    loudness = np.linspace(0.0, 1.0, 100)
    rest = rest_motion(targets, loudness, np.arange(0, 100, 2))
    assert rest.shape == (2, 3)
    assert rest[0, 1] < -0.0035 and rest[1, 1] == 0.0


def test_eyelid_rig_is_the_line_of_the_lids_motion_in_the_eye_openness():
    rng = np.random.default_rng(3)
    eye = np.clip(0.9 + 0.05 * rng.normal(size=300), 0, None)
    eye[40:44] = eye[150:154] = [0.5, 0.1, 0.1, 0.5]  # two blinks
    slopes = np.zeros((4, 3))
    slopes[:2, 1] = -0.008  # the upper lids go down (+y) 8 mm as the eye closes by 1
    targets = (eye - eye.mean())[:, None, None] * slopes + 0.0002 * rng.normal(size=(300, 4, 3))
    targets[7] = np.nan  # an untracked frame is left out
    frames = np.arange(300)
    rig = eyelid_rig(np.zeros((4, 3)), targets, eye, frames)
    np.testing.assert_allclose(rig.slopes.numpy(), slopes, atol=3e-4)
    assert abs(rig.centre - np.delete(eye, 7).mean()) < 1e-9
    closed = rig.motion(torch.tensor([rig.centre, 0.1]))
    assert closed.shape == (2, 4, 3)
    assert closed[0].abs().max() == 0.0  # at the centre the lids are where the canonical head has them
    assert 0.005 < float(closed[1, 0, 1]) < 0.008  # a closed eye: the upper lid down by ~6 mm
    still = eyelid_rig(np.zeros((4, 3)), targets, np.full(300, 0.9), frames)  # no blinks: nothing to fit
    assert still.slopes.abs().max() == 0.0
