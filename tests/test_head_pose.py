"""Head pose fitting on synthetic clips of a known rigid face (mediapipe's mesh of the astronaut portrait)
seen by a known camera, and on a real clip."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest
from mediapipe.python.solutions import face_mesh_connections as connections
from scipy.spatial.transform import Rotation
from skimage import data as skimage_data

from avatar.core.errors import AvatarError
from avatar.core.pinhole import centered_intrinsics, project
from avatar.face.landmarks import STABLE_LANDMARKS
from avatar.face.mediapipe_models import face_mesh, mesh_landmarks
from capture.head_pose import EYE_CORNER_DISTANCE_M, default_focal_px, fit_head_pose, to_head_frame

SIZE = 512
NOISE_PX = 0.7
MEDIAPIPE_Z_SCALE = 0.8  # the fit must not rely on mediapipe's z having the pixel scale of x


def _indices(edges) -> set[int]:
    return {i for edge in edges for i in edge}


LIPS = sorted(_indices(connections.FACEMESH_LIPS))


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """[478, 3] a real face shape in the head frame, metres."""
    with face_mesh(static_images=True, max_faces=1) as mesh:
        landmarks = mesh_landmarks(mesh, np.ascontiguousarray(skimage_data.astronaut()[:, :, :3]))
    assert landmarks.shape == (1, 478, 3)
    return to_head_frame(landmarks[0].astype(np.float64))


def _angles(n: int, amplitude_deg: float) -> np.ndarray:
    """[n, 3] smooth yaw, pitch, roll wandering within +-amplitude."""
    phase = 2 * np.pi * np.arange(n)[:, None] / n
    return amplitude_deg * np.sin(phase * np.array([1.3, 0.9, 0.7]) + np.array([0.2, 1.0, 2.0]))


def _rotations(angles_deg: np.ndarray) -> np.ndarray:
    return Rotation.from_euler("yxz", angles_deg, degrees=True).as_matrix()


def _translations(n: int, focal: float, eye_distance_px: float = 100.0) -> np.ndarray:
    """[n, 3] the head drifting a few centimetres, at a distance that shows the eyes `eye_distance_px`
    apart."""
    frames = np.arange(n)
    distance = focal * EYE_CORNER_DISTANCE_M / eye_distance_px
    return np.stack(
        [0.03 * np.sin(frames / 40), 0.02 * np.cos(frames / 55), distance * (1 + 0.1 * np.sin(frames / 70))],
        axis=1,
    )


def _observe(shapes: np.ndarray, R: np.ndarray, t: np.ndarray, focal: float, seed: int = 0) -> np.ndarray:
    """shapes [478, 3] or [N, 478, 3] head frame -> [N, 478, 3] mediapipe-like landmarks: noisy pixels and a
    noisy weak-perspective relative depth of unknown scale."""
    rng = np.random.default_rng(seed)
    shapes = np.broadcast_to(shapes, (len(R), 478, 3))
    pixels = project(shapes, R, t, centered_intrinsics(focal, SIZE)) + rng.normal(
        0, NOISE_PX, (len(R), 478, 2)
    )
    rotated_depth = np.einsum("nj,npj->np", R[:, 2], shapes)
    depth = MEDIAPIPE_Z_SCALE * focal / t[:, 2:3] * rotated_depth + rng.normal(0, 2.0, (len(R), 478))
    return np.concatenate([pixels, depth[..., None]], axis=-1)


def _rotation_errors_deg(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.degrees(Rotation.from_matrix(estimated @ truth.transpose(0, 2, 1)).magnitude())


def _yaw_deg(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(R).as_euler("yxz", degrees=True)[:, 0]


def test_stable_landmarks_leave_out_the_parts_that_move(face):
    expressive = (
        _indices(connections.FACEMESH_LIPS)
        | _indices(connections.FACEMESH_LEFT_EYEBROW)
        | _indices(connections.FACEMESH_RIGHT_EYEBROW)
        | _indices(connections.FACEMESH_IRISES)
        | (_indices(connections.FACEMESH_LEFT_EYE) | _indices(connections.FACEMESH_RIGHT_EYE))
        - {33, 133, 263, 362}
    )
    assert len(set(STABLE_LANDMARKS)) == len(STABLE_LANDMARKS) >= 30
    assert not set(STABLE_LANDMARKS) & expressive
    upper_lip_top = face[0, 1]
    assert np.all(face[list(STABLE_LANDMARKS), 1] < upper_lip_top)  # nothing on the jaw or chin


def test_head_frame_axes(face):
    assert np.linalg.norm(face[263] - face[33]) == pytest.approx(EYE_CORNER_DISTANCE_M)
    np.testing.assert_allclose(face[list(STABLE_LANDMARKS)].mean(axis=0), 0, atol=1e-12)
    assert face[33, 0] < 0 < face[263, 0]  # subject's right eye on the image left of a frontal face
    assert face[10, 1] < 0 < face[152, 1]  # forehead up, chin down
    assert face[1, 2] < face[234, 2] - 0.05  # the nose tip is nearer the camera than the face side
    assert abs(face[9, 2] - face[2, 2]) < 1e-9  # y runs along glabella -> subnasale


def test_project_matches_opencv(face):
    R = _rotations(np.array([[20.0, -10.0, 5.0]]))
    t = np.array([[0.02, -0.01, 0.6]])
    K = centered_intrinsics(900.0, SIZE)
    expected, _ = cv2.projectPoints(face, cv2.Rodrigues(R[0])[0], t[0], K, None)
    np.testing.assert_allclose(project(face, R, t, K)[0], expected[:, 0], atol=1e-9)


@pytest.mark.parametrize("focal_factor", [0.9, 2.2])
def test_recovers_focal_shape_and_poses(face, focal_factor):
    n, focal = 150, focal_factor * SIZE
    R, t = _rotations(_angles(n, 25.0)), _translations(n, focal)
    fit = fit_head_pose(_observe(face, R, t, focal), np.ones(n, dtype=bool), SIZE)

    assert fit.focal_estimated
    assert fit.focal_px == pytest.approx(focal, rel=0.1)
    np.testing.assert_allclose(fit.K, centered_intrinsics(fit.focal_px, SIZE))
    errors = _rotation_errors_deg(fit.rotations, R)
    assert errors.max() < 1.5 and errors.mean() < 0.5
    direction = np.sum(fit.translations * t, axis=1) / np.linalg.norm(fit.translations, axis=1)
    assert np.degrees(np.arccos(np.clip(direction / np.linalg.norm(t, axis=1), -1, 1))).max() < 0.2
    assert np.linalg.norm(fit.translations, axis=1) == pytest.approx(np.linalg.norm(t, axis=1), rel=0.1)
    stable = list(STABLE_LANDMARKS)
    assert np.abs(fit.canonical[stable] - face[stable]).max() < 0.003
    expected_error = NOISE_PX * math.sqrt(math.pi / 2)  # mean length of 2D Gaussian noise
    assert np.all(np.isfinite(fit.reprojection_error_px))
    assert expected_error * 0.8 < fit.reprojection_error_px.mean() < expected_error * 1.25


def test_smoothing_removes_jitter_without_lag(face):
    n, focal = 60, 1.5 * SIZE
    angles = np.zeros((n, 3))
    angles[:, 0] = np.linspace(-25, 25, n)  # 0.85 degree per frame: one frame of lag is a 0.85 degree error
    R, t = _rotations(angles), _translations(n, focal)
    landmarks = _observe(face, R, t, focal, seed=1)
    raw = fit_head_pose(landmarks, np.ones(n, dtype=bool), SIZE, smoothing_sigma_frames=0, focal_px=focal)
    smooth = fit_head_pose(landmarks, np.ones(n, dtype=bool), SIZE, smoothing_sigma_frames=3, focal_px=focal)

    raw_yaw, smooth_yaw = _yaw_deg(raw.rotations), _yaw_deg(smooth.rotations)
    slope = angles[1, 0] - angles[0, 0]
    lag_frames = np.mean(raw_yaw - smooth_yaw) / slope
    assert abs(lag_frames) < 0.05
    assert np.abs(smooth_yaw - angles[:, 0]).max() < 0.4
    assert np.diff(smooth_yaw, 2).std() < 0.5 * np.diff(raw_yaw, 2).std()
    assert np.std(smooth_yaw - angles[:, 0]) < np.std(raw_yaw - angles[:, 0])
    assert _rotation_errors_deg(smooth.rotations, R).max() < 1.0
    assert np.abs(smooth.translations - t).max() < 0.005


def test_invalid_frames_take_the_nearest_valid_pose(face):
    n, focal = 80, 1.5 * SIZE
    R, t = _rotations(_angles(n, 20.0)), _translations(n, focal)
    landmarks = _observe(face, R, t, focal)
    valid = np.ones(n, dtype=bool)
    valid[:3] = valid[30:40] = False
    landmarks[:3] = 0.0  # garbage that must not be read
    landmarks[30:40] = np.nan
    fit = fit_head_pose(landmarks, valid, SIZE)

    assert np.array_equal(np.isnan(fit.reprojection_error_px), ~valid)
    nearest = np.array([3, 3, 3] + list(range(3, 30)) + [29] * 5 + [40] * 5 + list(range(40, n)))
    np.testing.assert_array_equal(fit.rotations, fit.rotations[nearest])
    np.testing.assert_array_equal(fit.translations, fit.translations[nearest])
    assert _rotation_errors_deg(fit.rotations[valid], R[valid]).max() < 1.5


def test_talking_mouth_does_not_move_the_pose(face):
    n, focal = 120, 1.2 * SIZE
    R, t = _rotations(_angles(n, 15.0)), _translations(n, focal)
    opening = 0.5 + 0.5 * np.sin(np.arange(n) * 0.9)  # fast, about one syllable every 7 frames
    shapes = np.repeat(face[None], n, axis=0)
    lower_face = [i for i in range(478) if face[i, 1] > face[0, 1]]  # below the top of the upper lip
    shapes[:, lower_face, 1] += 0.02 * opening[:, None]  # jaw and lower lip drop by up to 2 cm
    shapes[:, LIPS, 0] *= 1 - 0.25 * opening[:, None]  # the lips pucker
    fit = fit_head_pose(_observe(shapes, R, t, focal), np.ones(n, dtype=bool), SIZE)

    assert fit.focal_px == pytest.approx(focal, rel=0.15)
    assert _rotation_errors_deg(fit.rotations, R).max() < 1.5
    assert np.abs(fit.translations - t).max() < 0.05 * t[:, 2].min()
    assert fit.reprojection_error_px.mean() < 1.5 * NOISE_PX * math.sqrt(math.pi / 2)
    mouth_drop = fit.canonical[LIPS, 1].mean() - face[LIPS, 1].mean()
    assert 0.005 < mouth_drop < 0.015  # the canonical mouth is an average over the clip


def test_static_head_falls_back_to_the_default_focal(face):
    n, focal = 80, 0.9 * SIZE
    R = _rotations(np.zeros((n, 3)))
    t = _translations(n, focal)
    fit = fit_head_pose(_observe(face, R, t, focal), np.ones(n, dtype=bool), SIZE)

    assert not fit.focal_estimated
    assert fit.focal_px == pytest.approx(default_focal_px(SIZE))
    assert _rotation_errors_deg(fit.rotations, R).max() < 2.0
    assert fit.reprojection_error_px.mean() < 2.0


def test_no_valid_frame_is_a_user_error(face):
    with pytest.raises(AvatarError, match="no frame"):
        fit_head_pose(np.zeros((5, 478, 3)), np.zeros(5, dtype=bool), SIZE)
    with pytest.raises(ValueError):
        fit_head_pose(np.zeros((5, 468, 3)), np.ones(5, dtype=bool), SIZE)


def test_five_minute_clip_fits_in_seconds(face):
    n, focal = 7500, 1.4 * SIZE
    R, t = _rotations(_angles(n, 20.0)), _translations(n, focal)
    landmarks = _observe(face, R, t, focal)
    start = time.perf_counter()
    fit = fit_head_pose(landmarks, np.ones(n, dtype=bool), SIZE)
    seconds = time.perf_counter() - start

    assert seconds < 20.0
    assert fit.focal_px == pytest.approx(focal, rel=0.1)
    assert _rotation_errors_deg(fit.rotations, R).max() < 1.5


@pytest.mark.shared_data
def test_real_clip(shared_data):
    """obama_address_20s.mp4, 8 s: the fit explains the tracked landmarks to about a pixel with a plausible
    camera and a head that faces the camera."""
    import av

    landmarks = []
    with av.open(str(shared_data / "obama_address_20s.mp4")) as container, face_mesh(False, 1) as mesh:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 200:
                break
            image = cv2.resize(frame.to_ndarray(format="rgb24"), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            landmarks.append(mesh_landmarks(mesh, image)[0])
    fit = fit_head_pose(np.stack(landmarks), np.ones(len(landmarks), dtype=bool), SIZE)

    assert fit.reprojection_error_px.mean() < 1.5
    assert 0.4 * SIZE < fit.focal_px < 5 * SIZE
    yaw, pitch, roll = Rotation.from_matrix(fit.rotations).as_euler("yxz", degrees=True).mean(axis=0)
    assert abs(yaw) < 15 and abs(pitch) < 15 and abs(roll) < 15
    assert 0.2 < fit.translations[:, 2].mean() < 5.0
