"""`avatar capture` end to end: the built-in sample, the shared real clips, resuming and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar.cli import main
from avatar.core.errors import AvatarError
from avatar.data.dataset import Dataset
from avatar.data.manifest import CaptureReport
from avatar.face import mediapipe_models as models
from avatar.sample.clip import load_sample_ground_truth
from capture import pipeline
from capture.config import CaptureConfig
from capture.pipeline import run_capture
from tests.media import read_frames, set_mp4_rotation, write_video


def _check_dataset(root, *, min_tracked: float = 0.98) -> tuple[Dataset, CaptureReport]:
    dataset = Dataset(root)
    report = CaptureReport.read(root / "capture_report.json")
    assert CaptureReport.from_json(report.to_json()) == report
    assert report.frames_total == dataset.num_frames and report.fps == dataset.fps
    n, size = dataset.num_frames, dataset.size
    tracking = dataset.tracking
    assert report.frames_tracked >= min_tracked * n
    assert report.reprojection_error_px < 0.01 * size
    assert tracking.landmarks.shape == (n, 478, 3) and tracking.rotations.shape == (n, 3, 3)
    assert dataset.audio_features().shape[:2] == (n, 16)
    assert (root / "preview.png").is_file()
    for index in np.flatnonzero(tracking.found):
        head = dataset.masks(index)[..., 1]
        xs = np.clip(np.round(tracking.landmarks[index, :, 0]).astype(int), 0, size - 1)
        ys = np.clip(np.round(tracking.landmarks[index, :, 1]).astype(int), 0, size - 1)
        assert (head[ys, xs] == 255).all(), f"frame {index}: a landmark outside the head mask"
    with models.face_detector(full_range=True, min_confidence=0.5) as detector:
        assert len(models.detect_face_boxes(detector, dataset.background())) == 0, (
            "a face in the background plate"
        )
    split = dataset.split
    assert split.val.min() > split.train.max()
    assert 0.05 * n <= len(split.val) <= 0.15 * n
    return dataset, report


@pytest.mark.slow
def test_sample_capture_recovers_ground_truth(sample_clip, sample_dataset):
    root, report = sample_dataset
    dataset, _ = _check_dataset(root, min_tracked=1.0)
    truth = load_sample_ground_truth(sample_clip.ground_truth)
    tracking = dataset.tracking
    assert len(truth.mouth_open) == dataset.num_frames
    r = np.corrcoef(tracking.mouth_openness, truth.mouth_open)[0, 1]
    assert r >= 0.9, f"mouth-opening correlation {r:.3f}"
    found_centers = np.flatnonzero(np.diff(np.r_[0, tracking.blink.astype(int)]) == 1)
    assert len(found_centers) == len(truth.blink_centers), (found_centers, truth.blink_centers)
    for center in truth.blink_centers:
        assert tracking.blink[center], f"blink at frame {center} not found"
    assert not tracking.blink[
        [i for i in range(dataset.num_frames) if min(abs(i - c) for c in truth.blink_centers) > 6]
    ].any()


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("clip", ["obama_address_20s.mp4", "vertical_phone_10s.mp4"])
def test_shared_clip_capture(tmp_path, shared_data, clip):
    report = run_capture(CaptureConfig(video=shared_data / clip, out=tmp_path / "dataset"))
    _check_dataset(tmp_path / "dataset")
    assert report.frames_total == {"obama_address_20s.mp4": 500, "vertical_phone_10s.mp4": 250}[clip]


@pytest.mark.slow
@pytest.mark.shared_data
def test_rotated_phone_video_is_captured_upright(tmp_path, shared_data):
    frames = read_frames(shared_data / "obama_address_20s.mp4")[:125]
    # Stored sideways, as a phone sensor records a portrait video, with a tag that turns it upright.
    sideways = [np.ascontiguousarray(np.rot90(frame, k=1)) for frame in frames]
    audio = 0.1 * np.sin(np.arange(5 * 48000) / 48000 * 2 * np.pi * 220).astype(np.float32)
    path = write_video(tmp_path / "rotated.mp4", sideways, audio=audio)
    set_mp4_rotation(path, 90)
    report = run_capture(CaptureConfig(video=path, out=tmp_path / "dataset"))
    assert report.source.rotation_ccw_deg == 270
    assert report.frames_tracked >= 0.98 * report.frames_total
    dataset = Dataset(tmp_path / "dataset")
    eyes = dataset.tracking.landmarks[0, [33, 263], :2]
    chin = dataset.tracking.landmarks[0, 152, :2]
    assert chin[1] > eyes[:, 1].max() + 50  # chin below the eyes: upright


@pytest.mark.slow
def test_interrupted_capture_resumes_without_redoing_finished_stages(tmp_path, sample_clip, monkeypatch):
    out = tmp_path / "dataset"
    real_segment_masks = pipeline.segment_masks
    calls = []

    def interrupted_after_20_frames(person, landmarks):
        calls.append(1)
        if len(calls) > 20:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the masks stage
        return real_segment_masks(person, landmarks)

    monkeypatch.setattr(pipeline, "segment_masks", interrupted_after_20_frames)
    with pytest.raises(KeyboardInterrupt):
        run_capture(CaptureConfig(video=sample_clip.video, out=out))
    assert not (out / "dataset.json").exists() and not (out / "masks").exists()
    with pytest.raises(AvatarError, match="not a finished capture"):
        Dataset(out)

    monkeypatch.setattr(pipeline, "segment_masks", real_segment_masks)
    report = run_capture(CaptureConfig(video=sample_clip.video, out=out))
    assert "track" not in report.stage_seconds and "masks" in report.stage_seconds
    assert not any(path.name.endswith(".partial") for path in out.iterdir())
    assert len(list((out / "masks").iterdir())) == report.frames_total
    Dataset(out)
    assert run_capture(CaptureConfig(video=sample_clip.video, out=out)).stage_seconds == {}


def _talking_noise_video(path, seconds: float, audio: bool = True, size=(160, 120)):
    rng = np.random.default_rng(0)
    frames = [
        cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (9, 9), 3)
        for _ in range(int(seconds * 25))
    ]
    sound = (0.1 * rng.standard_normal(int(seconds * 48000))).astype(np.float32) if audio else None
    return write_video(path, frames, audio=sound)


def _cli_error(capsys, *args) -> str:
    assert main(["capture", *map(str, args)]) == 2
    return capsys.readouterr().err


def test_not_a_video_is_refused(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 100)
    error = _cli_error(capsys, bad, "--out", tmp_path / "out")
    assert str(bad) in error and "not a video" in error
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_video_without_face_is_refused(tmp_path, capsys):
    video = _talking_noise_video(tmp_path / "noface.mp4", 4)
    error = _cli_error(capsys, video, "--out", tmp_path / "out")
    assert str(video) in error and "no face" in error
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_video_without_audio_needs_audio_option(tmp_path, capsys):
    video = _talking_noise_video(tmp_path / "silent.mp4", 4, audio=False)
    error = _cli_error(capsys, video, "--out", tmp_path / "out")
    assert str(video) in error and "--audio" in error


def test_too_short_clip_is_refused(tmp_path, capsys):
    video = _talking_noise_video(tmp_path / "short.mp4", 1.5)
    error = _cli_error(capsys, video, "--out", tmp_path / "out")
    assert str(video) in error and "shorter" in error


def test_unwritable_output_is_refused(tmp_path, capsys, sample_clip):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    error = _cli_error(capsys, sample_clip.video, "--out", blocker / "dataset")
    assert str(blocker / "dataset") in error and "cannot be written" in error


def test_output_of_a_different_video_is_refused(tmp_path, capsys, sample_clip):
    out = tmp_path / "out"
    video = _talking_noise_video(tmp_path / "other.mp4", 4)
    _cli_error(capsys, video, "--out", out)  # fails on "no face" after recording its source
    error = _cli_error(capsys, sample_clip.video, "--out", out)
    assert "different video" in error and str(out) in error


def test_foreign_nonempty_directory_is_refused(tmp_path, capsys, sample_clip):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    error = _cli_error(capsys, sample_clip.video, "--out", out)
    assert "not empty" in error
    assert (out / "holiday.jpg").read_bytes() == b"x"
