from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from avatar.face.landmarks import INNER_LIP_LOWER, INNER_LIP_UPPER, MOUTH_AND_JAW
from avatar.model.deformation import DeformationConfig, DeformationField
from avatar.model.landmark_motion import (
    eyelid_rig,
    landmark_displacements,
    lip_sides,
    mouth_motion_targets,
    rest_motion,
    skin_offsets,
    tracked_positions,
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


def test_tracked_positions_are_the_canonical_face_moved_by_the_tracking():
    rng = np.random.default_rng(1)
    canonical = rng.normal(scale=0.05, size=(478, 3))
    rotation = Rotation.from_euler("xyz", [0.05, 0.25, -0.1]).as_matrix()
    translation = np.array([0.01, 0.02, 0.55])
    moved = canonical.copy()
    moved[14] += rotation.T @ np.array([0.0, 0.005, 0.0])  # the inner lower lip drops 5 mm in the image
    landmarks = np.zeros((1, 478, 3))
    landmarks[0, :, :2] = _project(moved, rotation, translation)
    tracking = SimpleNamespace(
        landmarks=landmarks, rotations=rotation[None], translations=translation[None], intrinsics=K,
        canonical_landmarks=canonical,
    )  # fmt: skip
    positions = tracked_positions(tracking, (13, 14))
    assert positions.shape == (1, 2, 3)
    np.testing.assert_allclose(positions[0, 0], canonical[13], atol=1e-6)
    np.testing.assert_allclose(positions[0, 1], moved[14], atol=3e-5)


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


def test_narrow_interpolation_moves_a_gaussian_as_its_own_landmark_within_the_same_reach():
    # an inner lip landmark that drops 4 mm, its neighbours 5 mm away (the outer lip, the chin) 1 mm
    anchors = torch.tensor([[0.0, 0.0, 0.0], [0.005, 0.0, 0.0], [-0.005, 0.0, 0.0], [0.0, 0.005, 0.0]])
    motion = torch.tensor([[[0.0, 0.004, 0.0], [0.0, 0.001, 0.0], [0.0, 0.001, 0.0], [0.0, 0.001, 0.0]]])
    on_landmark = torch.tensor([[0.0, 0.0, 0.0]])
    wide = skin_offsets(on_landmark, anchors, motion, sigma=0.006)
    narrow = skin_offsets(on_landmark, anchors, motion, sigma=0.006, interpolation_sigma=0.002)
    assert float(wide[0, 0, 1]) < 0.0025  # the wide mean: well under the landmark's 4 mm
    assert float(narrow[0, 0, 1]) > 0.0035  # close to its own landmark's motion
    # the reach is the wide kernel's: far away nothing moves, and a Gaussian 10 mm out fades alike
    far = torch.tensor([[0.0, -0.01, 0.0], [0.3, 0.0, 0.0]])
    faded_wide = skin_offsets(far, anchors, motion, sigma=0.006)
    faded_narrow = skin_offsets(far, anchors, motion, sigma=0.006, interpolation_sigma=0.002)
    assert float(faded_narrow[0, 1, 1]) == 0.0
    reach = torch.exp(-torch.cdist(far[:1], anchors).square() / (2 * 0.006**2)).sum()
    assert float(reach) < 1.0
    torch.testing.assert_close(faded_narrow[0, 0, 1], reach * motion[0, 0, 1], rtol=0.1, atol=0.0)  # ~nearest
    assert float(faded_narrow[0, 0, 1]) > float(faded_wide[0, 0, 1])  # the nearest landmark, not the mean


def test_narrow_interpolation_is_continuous_and_keeps_the_lips_apart():
    anchors = torch.tensor([[0.0, -0.003, 0.0], [0.005, -0.003, 0.0], [0.0, 0.003, 0.0]])  # 2 upper, lower
    anchor_sides = torch.tensor([-1.0, -1.0, 1.0])
    motion = torch.tensor([[[0.0, 0.003, 0.0], [0.0, 0.0, 0.0], [0.0, -0.003, 0.0]]])
    line = torch.stack([torch.linspace(-0.002, 0.007, 91), torch.full((91,), -0.003), torch.zeros(91)], 1)
    sides = torch.full((91,), -1.0)  # along the upper lip, from one landmark past the other
    offsets = skin_offsets(
        line,
        anchors,
        motion,
        0.006,
        gaussian_sides=sides,
        anchor_sides=anchor_sides,
        interpolation_sigma=0.002,
    )[0, :, 1]
    steps = offsets.diff()
    assert float(steps.max()) <= 0.0 and float(steps.abs().max()) < 0.0003  # 0.1 mm apart: no jump
    assert float(offsets[20]) > 0.0028 and float(offsets[70]) < 0.0002  # each landmark's own motion
    assert float(offsets.min()) >= 0.0  # never the lower lip's upward motion


def _lip_curves():
    """Inner lips 6 mm apart at the middle, meeting at corners x = -/+25 mm (head frame: y down)."""
    x = torch.linspace(-0.025, 0.025, 11)
    half_gap = 0.003 * (1 - (x / 0.025).square())
    upper = torch.stack([x, -half_gap, torch.zeros_like(x)], dim=1)
    lower = torch.stack([x, half_gap, torch.zeros_like(x)], dim=1)
    return upper, lower


def test_lip_sides_split_the_lips_and_let_the_opening_and_corners_follow_both():
    upper, lower = _lip_curves()
    points = torch.tensor(
        [
            [0.0, -0.006, 0.0],  # above the upper lip's curve: upper side
            [0.0, 0.006, 0.0],  # below the lower lip's: lower side
            [0.0, 0.001, 0.01],  # inside the opening (any depth): both
            [0.02, -0.0015, 0.0],  # near a corner, above the (closer) upper curve
            [0.03, -0.004, 0.0],  # beyond a corner: both
            [-0.01, 0.0035, 0.0],  # lower side near the left: the curve is at 0.00252 there
        ]
    )
    assert lip_sides(points, upper, lower).tolist() == [-1.0, 1.0, 0.0, -1.0, 0.0, 1.0]


def test_sided_skinning_moves_each_lip_with_its_own_landmarks_only():
    anchors = torch.tensor([[0.0, -0.003, 0.0], [0.0, 0.003, 0.0], [0.05, 0.0, 0.0]])  # upper, lower, far
    anchor_sides = torch.tensor([-1.0, 1.0, 0.0])
    motion = torch.tensor([[[0.0, 0.003, 0.0], [0.0, -0.003, 0.0], [0.0, 0.0, 0.0]]])  # the lips close
    means = torch.tensor([[0.0, -0.005, 0.0], [0.0, 0.005, 0.0], [0.0, 0.0, 0.0]])
    sides = torch.tensor([-1.0, 1.0, 0.0])
    unsided = skin_offsets(means, anchors, motion, sigma=0.006)
    sided = skin_offsets(means, anchors, motion, 0.006, gaussian_sides=sides, anchor_sides=anchor_sides)
    gap_closed_unsided = float(unsided[0, 0, 1] - unsided[0, 1, 1])
    assert gap_closed_unsided < 0.003  # averaged: the 6 mm closure narrows the gap by less than half
    torch.testing.assert_close(sided[0, 0], motion[0, 0] * sided[0, 0, 1] / 0.003)  # upper follows upper only
    assert float(sided[0, 0, 1]) > 0.0025 and float(sided[0, 1, 1]) < -0.0025  # the lips meet
    torch.testing.assert_close(sided[0, 2], unsided[0, 2])  # the opening follows both
    torch.testing.assert_close(sided[0, 2], torch.zeros(3), atol=1e-9, rtol=0)  # ... which cancel here


def test_the_field_skins_the_lips_sidedly_and_narrowly_as_configured():
    canonical = torch.zeros(len(MOUTH_AND_JAW), 3)
    upper, lower = _lip_curves()
    for rows, curve in ((INNER_LIP_UPPER, upper), (INNER_LIP_LOWER, lower)):
        canonical[[MOUTH_AND_JAW.index(i) for i in rows]] = curve  # 11 points, corner to corner
    far = [i for i in range(len(MOUTH_AND_JAW)) if MOUTH_AND_JAW[i] not in INNER_LIP_UPPER + INNER_LIP_LOWER]
    canonical[far] = torch.tensor([0.0, 0.0, 0.2])  # everything else out of reach
    motion = torch.zeros(1, len(MOUTH_AND_JAW), 3)
    motion[0, [MOUTH_AND_JAW.index(i) for i in INNER_LIP_UPPER[1:-1]], 1] = 0.003  # the upper lip drops
    means = torch.tensor([[0.0, -0.005, 0.0], [0.0, 0.005, 0.0]])  # on the upper lip, on the lower lip
    shifts = {}
    for sided, interpolation in ((True, None), (False, None), (True, 0.002)):
        config = replace(DeformationConfig.tiny(), sided_lips=sided, mouth_interpolation_sigma=interpolation)
        field = DeformationField(
            config, torch.full((3,), -0.1), torch.full((3,), 0.1), mouth_anchors=canonical
        )
        shifts[sided, interpolation] = field.skinned_mouth(means, motion)[0, :, 1]
    sided, unsided, narrow = shifts[True, None], shifts[False, None], shifts[True, 0.002]
    assert float(sided[1]) == 0.0 and float(unsided[1]) > 0.0005  # the lower lip stays
    assert float(sided[0]) > float(unsided[0])  # the upper lip moves further alone
    assert float(narrow[0]) > float(sided[0]) and float(narrow[1]) == 0.0  # ... and further with its nearest


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
