"""Unit tests of the capture building blocks: decoding, crop, face track, masks, signals, background."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.face.landmarks import INNER_LIPS
from avatar.face.measures import mouth_openness
from avatar.face.regions import face_hull, segment_masks
from capture.background import BackgroundAccumulator, fill_holes
from capture.crop import SquareCrop, choose_crop
from capture.face_track import describe_frames, fill_gaps, runs, select_largest_track
from capture.signals import face_signals
from capture.video_source import iter_frames, probe_video
from tests.media import set_mp4_rotation, write_video


def _coded_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose index is readable after lossy coding: the whole frame is grey level 10 + 20 * index."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for index in range(count):
        frames[index] = 10 + 20 * index
    frames[:, :8, :8] = [255, 0, 0]  # a red marker in the stored top-left corner
    return frames


def _decoded_index(frame: np.ndarray) -> int:
    return int(round((float(np.median(frame[..., 1])) - 10) / 20))


def test_constant_rate_video_decodes_every_frame(tmp_path):
    path = write_video(tmp_path / "cfr.mp4", _coded_frames(10), fps=25)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation_ccw_deg) == (64, 48, 0)
    assert [_decoded_index(f) for f in iter_frames(info, 25)] == list(range(10))


def test_variable_rate_video_is_resampled_to_the_frame_shown_at_each_tick(tmp_path):
    times = [0.0, 0.05, 0.085, 0.11, 0.13, 0.19, 0.25, 0.31, 0.36, 0.41]
    path = write_video(tmp_path / "vfr.mp4", _coded_frames(10), times_s=times)
    info = probe_video(path)
    decoded = [_decoded_index(f) for f in iter_frames(info, 25)]
    ticks = np.arange(info.num_output_frames(25)) / 25
    expected = [int(np.searchsorted(times, tick + 0.02, side="right") - 1) for tick in ticks]
    assert decoded == expected
    assert len(decoded) == info.num_output_frames(25)


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_rotation_tag_is_applied(tmp_path, clockwise):
    path = write_video(tmp_path / "rot.mp4", _coded_frames(3))
    set_mp4_rotation(path, clockwise)
    info = probe_video(path)
    frame = next(iter_frames(info, 25))
    assert frame.shape[:2] == ((64, 48) if clockwise in (90, 270) else (48, 64))
    red = frame[..., 0].astype(int) - frame[..., 1]
    corner = {90: red[:8, -8:], 180: red[-8:, -8:], 270: red[-8:, :8]}[clockwise]
    assert corner.mean() > 150  # the stored top-left marker moved where a clockwise turn puts it


def test_crop_is_square_inside_frame_and_frames_head_and_shoulders():
    boxes = np.array([[500, 700, 620, 820], [510, 705, 630, 825]], np.float32)
    crop = choose_crop(boxes, 1080, 1920)
    assert 0 <= crop.x0 and crop.x0 + crop.side <= 1080 and 0 <= crop.y0 and crop.y0 + crop.side <= 1920
    assert 300 < crop.side < 500  # about three face heights: room for hair and shoulders
    face_y = (760 - crop.y0) / crop.side
    assert 0.3 < face_y < 0.55
    wide = choose_crop(np.array([[150, 80, 300, 260]], np.float32), 450, 450)
    assert wide.side == 450
    assert SquareCrop.from_dict(crop.to_dict()) == crop
    image = np.zeros((1920, 1080, 3), np.uint8)
    assert crop.apply(image, 512).shape == (512, 512, 3)


def _face(center_x: float, size: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(int(center_x))
    face = rng.uniform(-0.5, 0.5, (478, 3)).astype(np.float32) * size
    face[:, 0] += center_x
    face[:, 1] += 200
    return face


def test_largest_face_track_is_kept_and_other_faces_reported():
    faces = np.zeros((6, 2, 478, 3), np.float32)
    counts = np.array([1, 2, 2, 1, 0, 1])
    small, large = _face(100, 40), _face(300, 120)
    faces[0, 0] = large
    faces[1, 0], faces[1, 1] = small, large
    faces[2, 0], faces[2, 1] = large, small
    faces[3, 0] = large
    faces[5, 0] = large + 2
    landmarks, found, multi = select_largest_track(faces, counts)
    assert found.tolist() == [True, True, True, True, False, True]
    assert multi == [1, 2]
    assert np.allclose(landmarks[1], large) and np.allclose(landmarks[2], large)


def test_short_gaps_are_interpolated_long_gaps_stay_invalid():
    landmarks = np.zeros((20, 478, 3), np.float32)
    landmarks[:, :, 0] = np.arange(20)[:, None]
    found = np.ones(20, bool)
    found[3:5] = False
    found[10:17] = False
    track = fill_gaps(landmarks, found, max_gap=3, multi_face_frames=[])
    assert track.interpolated.tolist() == [i in (3, 4) for i in range(20)]
    assert np.allclose(track.landmarks[3:5, 0, 0], [3, 4])
    assert not track.valid[10:17].any()
    assert runs(~track.valid) == [(10, 17)]
    assert "10-16 (0.40-0.68 s)" in describe_frames(~track.valid, 25)


def _synthetic_mesh(mouth_gap: float, lid_gap: float) -> np.ndarray:
    """A face-mesh-like landmark set: an oval face, eyes and lips at their mediapipe indices."""
    from avatar.face.landmarks import (
        CHEEK_LEFT_OF_IMAGE,
        CHEEK_RIGHT_OF_IMAGE,
        CHIN,
        EYES,
        FOREHEAD_TOP,
        LOWER_JAW,
    )

    points = np.zeros((478, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    points[:, 0] = 256 + 70 * np.cos(angles) * 0.9
    points[:, 1] = 250 + 90 * np.sin(angles) * 0.9
    points[FOREHEAD_TOP] = (256, 160, 0)
    points[CHIN] = (256, 340, 0)
    points[CHEEK_LEFT_OF_IMAGE] = (186, 250, 0)
    points[CHEEK_RIGHT_OF_IMAGE] = (326, 250, 0)
    jaw = np.linspace(0.3, np.pi - 0.3, len(LOWER_JAW))
    for angle, index in zip(jaw, LOWER_JAW):
        points[index] = (256 + 70 * np.cos(angle), 250 + 90 * np.sin(angle), 0)
    lips = np.linspace(0, 2 * np.pi, len(INNER_LIPS), endpoint=False)
    for angle, index in zip(lips, INNER_LIPS):
        points[index] = (256 - 25 * np.cos(angle), 300 - mouth_gap / 2 * np.sin(angle), 0)
    points[13], points[14] = (256, 300 - mouth_gap / 2, 0), (256, 300 + mouth_gap / 2, 0)
    points[78], points[308] = (231, 300, 0), (281, 300, 0)
    for (upper, lower, a, b), x in zip(EYES, (226, 286)):
        points[a], points[b] = (x - 15, 230, 0), (x + 15, 230, 0)
        points[upper], points[lower] = (x, 230 - lid_gap / 2, 0), (x, 230 + lid_gap / 2, 0)
    return points


def test_masks_cover_face_split_person_and_find_the_mouth():
    landmarks = _synthetic_mesh(mouth_gap=20, lid_gap=8)
    person = np.zeros((512, 512), np.uint8)
    person[120:, 150:362] = 255  # head and neck
    person[380:, 40:472] = 255  # shoulders
    masks = segment_masks(person, landmarks)
    person_m, head, torso, mouth = (masks[..., c] for c in range(4))
    xs, ys = np.round(landmarks[:, 0]).astype(int), np.round(landmarks[:, 1]).astype(int)
    assert (head[ys, xs] == 255).all()
    assert head[130, 256] == 255  # hair above the forehead
    assert head[450, 100] == 0 and torso[450, 100] == 255  # shoulder
    assert not (head.astype(bool) & torso.astype(bool)).any()
    assert mouth[300, 256] == 255 and mouth[250, 256] == 0
    assert (person_m == person).all()
    assert face_hull(landmarks, 512).sum() > 0


def test_signals_track_mouth_and_find_blinks():
    mouth_gaps = 20 * (0.5 + 0.5 * np.sin(np.arange(60) / 3))
    lids = np.full(60, 8.0)
    lids[20:23] = [3, 0.5, 3]
    lids[45:48] = [4, 0.5, 2]
    landmarks = np.stack([_synthetic_mesh(m, lid) for m, lid in zip(mouth_gaps, lids)])
    signals = face_signals(landmarks, np.ones(60, bool))
    assert np.corrcoef(signals.mouth_openness, mouth_gaps)[0, 1] > 0.99
    assert signals.blink_centers == [21, 46]
    assert np.isclose(np.median(signals.eye_openness), 1.0)
    assert np.allclose(mouth_openness(landmarks[0]), mouth_gaps[0] / 50, atol=1e-3)


def test_background_uses_only_uncovered_pixels_and_fills_the_rest():
    accumulator = BackgroundAccumulator(64, margin_px=2)
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:] = (30, 60, 90)
    frame[:, 32:] = (200, 10, 10)  # the person, always on the right half
    person = np.zeros((64, 64), np.uint8)
    person[:, 32:] = 255
    for _ in range(3):
        accumulator.add(frame, person)
    plate, seen = accumulator.plate()
    assert seen[:, :29].all() and not seen[:, 30:].any()
    assert np.abs(plate.astype(int) - (30, 60, 90)).max() <= 1  # no trace of the person's colour


def test_push_pull_fill_is_smooth_and_keeps_known_pixels():
    image = np.zeros((32, 32, 3), np.float32)
    image[:, :16] = 100
    image[:, 16:] = 200
    known = np.ones((32, 32), bool)
    known[10:20, 10:22] = False
    filled = fill_holes(image, known)
    assert (filled[known] == image[known]).all()
    assert 100 <= filled[15, 11, 0] < filled[15, 20, 0] <= 200
