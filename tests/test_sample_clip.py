"""The built-in sample clip: mediapipe must see the face, the mouth, the blinks and the head motion the
ground truth claims."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import mediapipe as mp
import numpy as np
import pytest
from skimage import data as skimage_data

from avatar.sample.clip import SampleClip, load_sample_ground_truth, make_sample_clip

HEAD_POINTS = [33, 263, 1, 168]  # eye corners, nose tip, between the brows: unmoved by mouth and lids


def _decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])


def _face_landmarks(frames: list[np.ndarray], video_mode: bool = True) -> np.ndarray:
    """[N, 478, 2] face-mesh landmarks in pixels per frame; NaN where no face is found."""
    found = []
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=not video_mode, refine_landmarks=True, max_num_faces=1
    ) as mesh:
        for frame in frames:
            result = mesh.process(frame)
            height, width = frame.shape[:2]
            if result.multi_face_landmarks:
                found.append([(p.x * width, p.y * height) for p in result.multi_face_landmarks[0].landmark])
            else:
                found.append(np.full((478, 2), np.nan))
    return np.asarray(found, dtype=np.float64)


def _gap(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def _roll_deg(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise tilt on screen of the line between the outer eye corners."""
    between = points[..., 263, :] - points[..., 33, :]
    return np.degrees(np.arctan2(-between[..., 1], between[..., 0]))


def _check_clip_against_mediapipe(clip: SampleClip, seconds: float, fps: int) -> None:
    truth = load_sample_ground_truth(clip.ground_truth)
    frames = _decode_video(clip.video)
    assert len(frames) == truth.n_frames == round(seconds * fps)
    assert all(frame.shape == (512, 512, 3) for frame in frames)

    points = _face_landmarks(frames)
    missing = np.flatnonzero(np.isnan(points).any(axis=(1, 2)))
    assert len(missing) == 0, f"no face found in frames {missing.tolist()}"

    mouth = _gap(points, 13, 14) / _gap(points, 78, 308)
    r = np.corrcoef(mouth, truth.mouth_open)[0, 1]
    assert r >= 0.95, f"mediapipe's inner-lip gap correlates with mouth_open at only r = {r:.3f}"

    eyes = (
        _gap(points, 159, 145) / _gap(points, 33, 133) + _gap(points, 386, 374) / _gap(points, 362, 263)
    ) / 2
    assert truth.blink_centers
    median = np.median(eyes)
    at_blinks = eyes[truth.blink_centers] / median
    assert np.all(at_blinks < 0.5), f"eye openness at blink centres, relative to the median: {at_blinks}"
    far_from_blinks = np.ones(len(eyes), bool)
    for centre in truth.blink_centers:
        far_from_blinks[max(0, centre - 5) : centre + 6] = False
    assert eyes[far_from_blinks].min() > 0.75 * median

    # Head motion, measured against the still: the roll and the head's position follow the ground truth.
    still = _face_landmarks([skimage_data.astronaut()], video_mode=False)[0]
    roll_error = _roll_deg(points) - _roll_deg(still) - truth.head_rotation_deg
    assert np.abs(roll_error).mean() < 0.5, (
        f"head roll is off by {np.abs(roll_error).mean():.2f} deg on average"
    )
    angle = np.radians(-truth.head_rotation_deg)  # image y points down
    offset = still[HEAD_POINTS].mean(axis=0) - truth.head_pivot_px
    rotated = np.stack(
        [
            np.cos(angle) * offset[0] - np.sin(angle) * offset[1],
            np.sin(angle) * offset[0] + np.cos(angle) * offset[1],
        ],
        axis=1,
    )
    expected = rotated + truth.head_pivot_px + truth.head_translation_px
    position_error = np.abs(points[:, HEAD_POINTS].mean(axis=1) - expected)
    assert position_error.mean() < 0.5 and position_error.max() < 2.0, (
        f"head position is off by {position_error.mean():.2f} px on average, {position_error.max():.2f} px at worst"
    )


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> SampleClip:
    return make_sample_clip(tmp_path_factory.mktemp("sample"), seconds=4.0, fps=25, seed=0)


def test_mediapipe_sees_the_mouth_and_blinks_of_the_ground_truth(short_clip: SampleClip) -> None:
    _check_clip_against_mediapipe(short_clip, seconds=4.0, fps=25)


def test_video_and_audio_streams(short_clip: SampleClip) -> None:
    with av.open(str(short_clip.video)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 512, 512)
        assert video.average_rate == 25
        assert audio.codec_context.name == "aac"
        assert abs(float(audio.duration * audio.time_base) - 4.0) <= 1024 / audio.rate
    speech = _decode_audio(short_clip.video)
    assert 0.05 < np.sqrt(np.mean(speech**2)) < 0.5


def test_ground_truth_is_consistent(short_clip: SampleClip) -> None:
    truth = load_sample_ground_truth(short_clip.ground_truth)
    assert (truth.fps, truth.seconds, truth.seed) == (25, 4.0, 0)
    n = truth.n_frames
    assert truth.eye_closure.shape == truth.head_rotation_deg.shape == (n,)
    assert truth.head_translation_px.shape == (n, 2)
    assert truth.head_pivot_px.shape == (2,)
    assert truth.mouth_open.min() < 0.05 and truth.mouth_open.max() == 1.0
    assert set(truth.blink_centers) <= set(truth.blink_frames)
    assert all(3 <= len([f for f in truth.blink_frames if abs(f - c) <= 4]) <= 6 for c in truth.blink_centers)
    # Small, smooth head motion that does happen.
    assert 0.2 < np.abs(truth.head_rotation_deg).max() <= 3.0
    assert 0.2 < np.abs(truth.head_translation_px).max() <= 3.0
    assert np.abs(np.diff(truth.head_rotation_deg)).max() < 0.3


def test_same_seed_gives_the_same_clip_and_another_seed_does_not(tmp_path: Path) -> None:
    first = make_sample_clip(tmp_path / "a", seconds=1.0, seed=3)
    second = make_sample_clip(tmp_path / "b", seconds=1.0, seed=3)
    other = make_sample_clip(tmp_path / "c", seconds=1.0, seed=4)
    assert first.ground_truth.read_text() == second.ground_truth.read_text()
    assert np.array_equal(_decode_audio(first.video), _decode_audio(second.video))
    assert (
        json.loads(first.ground_truth.read_text())["mouth_open"]
        != json.loads(other.ground_truth.read_text())["mouth_open"]
    )
    assert not np.array_equal(_decode_audio(first.video), _decode_audio(other.video))


def test_existing_clip_is_reused_and_other_parameters_regenerate(tmp_path: Path) -> None:
    clip = make_sample_clip(tmp_path, seconds=1.0, seed=0)
    stamps = (clip.video.stat().st_mtime_ns, clip.ground_truth.stat().st_mtime_ns)
    time.sleep(0.01)
    again = make_sample_clip(tmp_path, seconds=1.0, seed=0)
    assert again == clip
    assert (clip.video.stat().st_mtime_ns, clip.ground_truth.stat().st_mtime_ns) == stamps

    longer = make_sample_clip(tmp_path, seconds=1.2, seed=0)
    assert load_sample_ground_truth(longer.ground_truth).seconds == 1.2
    assert len(_decode_video(longer.video)) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.mp4", "sample_ground_truth.json"]


def test_missing_video_is_regenerated(tmp_path: Path) -> None:
    clip = make_sample_clip(tmp_path, seconds=0.4, seed=0)
    clip.video.unlink()
    make_sample_clip(tmp_path, seconds=0.4, seed=0)
    assert len(_decode_video(clip.video)) == 10


@pytest.mark.slow
def test_full_length_sample_clip(tmp_path: Path) -> None:
    start = time.perf_counter()
    clip = make_sample_clip(tmp_path, seconds=12.0, fps=25, seed=0)
    assert time.perf_counter() - start < 60
    truth = load_sample_ground_truth(clip.ground_truth)
    assert 3 <= len(truth.blink_centers) <= 4
    _check_clip_against_mediapipe(clip, seconds=12.0, fps=25)
