"""`avatar render`'s cameras and backgrounds on the fitted sample: transparent video, PNG frames, orbits, paths."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from avatar.core.errors import AvatarError
from avatar.drive.background import parse_background
from avatar.drive.driver import load_fitted
from avatar.drive.video import RenderConfig, drive_with_audio, render_video
from avatar.media.audio_io import save_wav
from avatar.media.video_reader import rgba_frames
from avatar.sample.speech import synthesize_speech


def _speech(tmp_path, seconds: float = 1.2):
    path = tmp_path / "speech.wav"
    save_wav(path, synthesize_speech(seconds, 16000, seed=21).audio, 16000)
    return path


@pytest.mark.slow
def test_a_transparent_render_keeps_the_avatar_s_alpha(sample_runs, tmp_path):
    run, _ = sample_runs["audio"]
    out, pngs = tmp_path / "clear.webm", tmp_path / "frames"
    config = RenderConfig(
        run=run, audio=_speech(tmp_path), out=out, background="transparent", frames_dir=pngs, progress=False
    )
    result = render_video(config)
    written = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(pngs.glob("*.png"))]
    decoded = list(rgba_frames(out))
    assert len(written) == len(decoded) == result.frames == 30
    for png, frame in zip(written, decoded):
        alpha = png[..., 3]
        size = alpha.shape[0]
        assert alpha[0, 0] == 0 and alpha[size // 3, size // 2] == 255  # the corner is clear, the face is not
        assert 0.1 < (alpha > 127).mean() < 0.9
        coverage, read = alpha > 127, frame[..., 3] > 127
        assert (coverage & read).sum() / (coverage | read).sum() > 0.97
        assert np.abs(frame[..., 3].astype(int) - alpha).mean() < 4
    with pytest.raises(AvatarError, match="alpha channel") as error:
        render_video(
            RenderConfig(run=run, audio=config.audio, out=tmp_path / "x.mp4", background="transparent")
        )
    assert ".webm" in str(error.value) and ".mov" in str(error.value)
    with pytest.raises(AvatarError, match="not a known colour"):
        render_video(RenderConfig(run=run, audio=config.audio, out=tmp_path / "x.mp4", background="mauvish"))


@pytest.mark.slow
def test_an_orbit_turns_the_avatar_and_keeps_it_whole(sample_runs, tmp_path):
    run, _ = sample_runs["audio"]
    fitted = load_fitted(run, device="cpu", backend="torch")
    speech = _speech(tmp_path, seconds=2.0)
    clip = drive_with_audio(fitted, speech, background=parse_background("transparent"), camera="orbit:30")
    frames = list(clip.frames())
    assert len(frames) == 50 and frames[0].shape[-1] == 4
    for frame in frames:
        covered = (frame[..., 3] > 127).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(covered)
        areas = sorted(stats[1:, cv2.CC_STAT_AREA], reverse=True)
        assert areas and sum(areas[1:]) <= 0.01 * areas[0]  # one region: no part cut off
        count, _, stats, _ = cv2.connectedComponentsWithStats(1 - covered)
        height, width = covered.shape
        x, y, w, h = (stats[1:, k] for k in range(4))
        enclosed = (x > 0) & (y > 0) & (x + w < width) & (y + h < height)  # background the bust surrounds
        assert stats[1:, cv2.CC_STAT_AREA][enclosed].sum() <= 0.005 * areas[0]  # no hole, no gap at the neck
    assert fitted.torso is not None and clip.view.bust  # the fit made a torso: the whole bust turns
    capture = drive_with_audio(
        fitted, speech, background=parse_background("transparent"), torso_from_capture=False
    )
    first = next(capture.frames())
    assert np.abs(first.astype(int) - frames[0]).mean() < 1  # t = 0: the capture's camera
    bottom = frames[0][-3:, :, 3] > 127
    assert bottom.mean() > 0.2  # the torso reaches the bottom of the frame
    quarter, three_quarters = frames[12], frames[37]  # +30 and -30 degrees
    assert np.abs(quarter[..., 3].astype(int) - three_quarters[..., 3]).mean() > 5  # seen from two sides
    view_tokens = clip.signals.rotations[[0, 12]]
    assert not np.allclose(view_tokens[0], view_tokens[1])  # the view token sees the camera move
    with pytest.raises(AvatarError, match="plate is what the capture's camera saw"):
        drive_with_audio(fitted, speech, background=parse_background("plate"), camera="orbit:30")


@pytest.mark.slow
def test_a_camera_path_file_drives_the_camera_and_a_bad_one_is_named(sample_runs, tmp_path):
    run, _ = sample_runs["audio"]
    speech = _speech(tmp_path)
    path = tmp_path / "path.json"
    keyframes = [
        {"time": 0.0, "position": [0.0, 0.0, -0.7], "look_at": [0.0, 0.0, 0.0], "fov_deg": 25.0},
        {"time": 1.2, "position": [0.2, 0.0, -0.65], "look_at": [0.0, 0.0, 0.0], "fov_deg": 25.0},
    ]
    path.write_text(json.dumps({"format": "splat-avatar-camera-path", "version": 1, "keyframes": keyframes}))
    out = tmp_path / "path.mp4"
    render_video(
        RenderConfig(run=run, audio=speech, out=out, camera=str(path), background="white", progress=False)
    )
    frames = list(rgba_frames(out))
    middle = frames[0][..., :3].astype(int)
    assert (np.abs(middle - 255).sum(-1) > 60).mean() > 0.02  # the avatar is in view over white
    ys, xs = np.nonzero(np.abs(middle - 255).sum(-1) > 60)
    assert abs(xs.mean() - middle.shape[1] / 2) < 0.2 * middle.shape[1]  # looked at: near the middle
    del keyframes[1]["fov_deg"]
    path.write_text(json.dumps({"format": "splat-avatar-camera-path", "version": 1, "keyframes": keyframes}))
    with pytest.raises(AvatarError, match="keyframe 1 lacks 'fov_deg'") as error:
        render_video(RenderConfig(run=run, audio=speech, out=out, camera=str(path), background="white"))
    assert str(path) in str(error.value)


@pytest.mark.slow
def test_a_run_without_a_torso_renders_over_the_capture_s_own(sample_runs, tmp_path):
    import shutil

    run, _ = sample_runs["audio"]
    bare = tmp_path / "run"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("torso.safetensors", "opening_transfer.json"))
    fitted = load_fitted(bare, device="cpu", backend="torch")
    assert fitted.torso is None
    clip = drive_with_audio(fitted, _speech(tmp_path, seconds=0.4))
    assert clip.view.capture_torso and not clip.view.bust
    frame = next(clip.frames())
    assert frame.shape == (fitted.dataset.size, fitted.dataset.size, 3)
    orbit = drive_with_audio(
        fitted, _speech(tmp_path, 0.4), background=parse_background("grey"), camera="orbit:20"
    )
    assert not orbit.view.capture_torso and not orbit.view.bust  # the head alone: no torso to turn
    assert next(orbit.frames()).shape == frame.shape


@pytest.mark.slow
def test_at_the_capture_s_camera_the_gaussian_torso_wears_the_frame_s_colours(sample_runs, tmp_path):
    run, _ = sample_runs["audio"]
    fitted = load_fitted(run, device="cpu", backend="torch")
    speech = _speech(tmp_path, seconds=0.4)
    clear = parse_background("transparent")
    coloured = drive_with_audio(fitted, speech, background=clear)
    own = drive_with_audio(fitted, speech, background=clear, torso_from_capture=False)
    assert coloured.view.bust and coloured.view.capture_torso and not own.view.capture_torso
    index = int(coloured.poses[0])
    real = fitted.dataset.frame(index).astype(int)
    masks = fitted.dataset.masks(index)
    a, b = next(coloured.frames()), next(own.frames())
    # the bust covers what it covered, now over the frame's torso: away from that torso nothing changes
    torso = masks[..., 2] > 127
    assert (a[..., 3].astype(int) >= b[..., 3].astype(int) - 1).all()
    away = ~(cv2.dilate(torso.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0)  # past the feathered edge
    assert np.abs(a[..., 3].astype(int) - b[..., 3])[away].max() <= 1
    inner = cv2.erode(torso.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    solid = inner & (a[..., 3] == 255)  # deep inside the frame's torso, where the bust is opaque
    assert solid.sum() > 200
    error_coloured = np.abs(a[..., :3].astype(int) - real)[solid].mean()
    error_own = np.abs(b[..., :3].astype(int) - real)[solid].mean()
    assert error_coloured < 3 and error_coloured < 0.5 * error_own, (error_coloured, error_own)
    head = cv2.erode((masks[..., 1] > 127).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    face = head & ~(cv2.dilate(inner.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
    assert np.abs(a[..., :3].astype(int) - b[..., :3])[face].mean() < 0.5  # the head is the head's own
