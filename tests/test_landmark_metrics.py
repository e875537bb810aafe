"""Mouth metrics from mediapipe's face mesh on the astronaut portrait and the built-in sample clip."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from avatar.face.landmarks import LIP_CONTOURS
from avatar.metrics.landmarks import FaceMeshRunner, landmark_distance, mouth_metrics, mouth_opening, pearson
from avatar.sample.clip import load_sample_ground_truth, make_sample_clip
from tests.media import read_frames


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[:, :, :3])


@pytest.fixture(scope="module")
def clip_frames(tmp_path_factory):
    clip = make_sample_clip(tmp_path_factory.mktemp("sample_3s"), seconds=3)
    return read_frames(clip.video), load_sample_ground_truth(clip.ground_truth)


def test_mouth_landmarks_are_mediapipes_lip_contours():
    import mediapipe as mp

    lips = {index for edge in mp.solutions.face_mesh_connections.FACEMESH_LIPS for index in edge}
    assert len(LIP_CONTOURS) == len(set(LIP_CONTOURS)) == 40
    assert set(LIP_CONTOURS) == lips


def test_shifted_copy_has_near_zero_lmd(portrait):
    with FaceMeshRunner() as runner:
        real = runner.landmarks(portrait)
        shifted = runner.landmarks(_shifted(portrait, 9.0, -6.0))
    assert real.shape == shifted.shape == (478, 3)
    mouth = list(LIP_CONTOURS)
    raw = np.linalg.norm(shifted[mouth, :2] - real[mouth, :2], axis=1).mean()
    assert raw == pytest.approx(math.hypot(9, 6), abs=1.5)  # the landmarks did move with the image
    assert landmark_distance(shifted, real) < 1.0  # but the whole-face offset is removed
    assert landmark_distance(real, real) == 0.0


def test_lmd_and_mouth_opening_follow_the_sample_mouth(clip_frames):
    frames, truth = clip_frames
    closed, opened = int(np.argmin(truth.mouth_open)), int(np.argmax(truth.mouth_open))
    with FaceMeshRunner() as runner:
        closed_points = runner.landmarks(frames[closed])
        open_points = runner.landmarks(frames[opened])
    assert mouth_opening(open_points) > mouth_opening(closed_points) + 0.2
    assert landmark_distance(open_points, closed_points) > 3.0  # px at 512x512: the jaw drops about 15 px


def test_frames_without_a_face_are_counted(portrait):
    black = np.zeros_like(portrait)
    result = mouth_metrics([portrait, portrait, black], [portrait, black, portrait])
    assert result.frames == 3
    assert result.frames_without_face == 1
    assert result.real_frames_without_face == 1
    assert result.lmd_px == 0.0  # only the first pair has a face on both sides
    assert np.isnan(result.mouth_open_rendered[1]) and np.isnan(result.mouth_open_real[2])
    assert math.isnan(result.mouth_open_correlation)  # one usable pair

    nothing = mouth_metrics([portrait], [black])
    assert nothing.frames_without_face == 1 and math.isnan(nothing.lmd_px)


def test_mouth_metrics_streams_and_needs_equal_lengths(portrait):
    with pytest.raises(ValueError):
        mouth_metrics(iter([portrait, portrait]), iter([portrait]))


def test_mouth_opening_correlation_on_the_sample_clip(clip_frames):
    frames, truth = clip_frames
    same = mouth_metrics(iter(frames), iter(frames))
    assert same.frames == len(frames) == truth.n_frames
    assert same.frames_without_face == 0
    assert same.mouth_open_correlation == pytest.approx(1.0, abs=1e-9)
    assert same.eye_open_correlation == pytest.approx(1.0, abs=1e-9)  # the sample blinks
    assert same.lmd_px == 0.0
    assert pearson(same.mouth_open_real, truth.mouth_open) > 0.9

    reversed_ = mouth_metrics(iter(frames), iter(frames[::-1]))
    print(
        f"sample clip, real vs time-reversed: r = {reversed_.mouth_open_correlation:.3f}, "
        f"LMD = {reversed_.lmd_px:.2f} px"
    )
    assert reversed_.mouth_open_correlation < 0.5 and reversed_.eye_open_correlation < 0.5
    assert reversed_.lmd_px > 0.5
    np.testing.assert_array_equal(reversed_.mouth_open_rendered, same.mouth_open_real[::-1])


def test_pearson():
    t = np.linspace(0, 1, 20)
    assert pearson(t, 3 * t + 1) == pytest.approx(1.0)
    assert pearson(t, -t) == pytest.approx(-1.0)
    assert math.isnan(pearson(t, np.full(20, 0.1)))  # constant: undefined
    assert math.isnan(pearson(np.array([1.0]), np.array([2.0])))
    with_gaps = np.where(np.arange(20) % 4 == 0, np.nan, t)
    assert pearson(with_gaps, 2 * t) == pytest.approx(1.0)  # the NaN pairs are left out
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    with pytest.raises(ValueError):
        pearson(t, t[:5])
