"""`avatar view`'s parts without a browser: splat packing, frame buffering, media choices, uploads, cameras,
and the errors it gives before the server starts."""

from __future__ import annotations

import math
import socket
import threading
import time

import numpy as np
import pytest
import torch

from avatar.cli import main
from avatar.core.errors import AvatarError
from avatar.drive.camera_path import CameraPath, look_at_viewmat, path_cameras
from avatar.media.audio_io import save_wav
from avatar.model.gaussians import GaussianSet
from avatar.model.rigid import rotvec_to_quat
from avatar.render import EPS2D, project_gaussians, quat_scale_to_covar
from viewers.camera import CameraRecorder, ViewerCamera, capture_camera
from viewers.frames import ClipFrames, attention_colors, frame_avatars, frames_to_buffer, widened
from viewers.media import MediaFolder, UploadInbox
from viewers.splat_buffer import (
    SCENE_SCALE,
    pack_splats,
    unpack_centers,
    unpack_covariances,
    unpack_rgba,
)


def _gaussians(num: int, seed: int = 0) -> GaussianSet:
    """Gaussians of this avatar's sizes: 0.1-20 mm standard deviations about a 30 cm head."""
    generator = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=(torch.rand(num, 3, generator=generator) - 0.5) * 0.3,
        quats=rotvec_to_quat(torch.randn(num, 3, generator=generator)),
        scales=torch.exp(torch.empty(num, 3).uniform_(math.log(1e-4), math.log(2e-2), generator=generator)),
        opacities=torch.rand(num, generator=generator),
        colors=torch.rand(num, 3, generator=generator),
    )


def test_packed_splats_keep_this_avatars_covariances_in_float16_only_in_the_scaled_scene():
    gaussians = _gaussians(2000)
    exact = quat_scale_to_covar(gaussians.quats.double(), gaussians.scales.double()).numpy()
    norms = np.linalg.norm(exact, axis=(1, 2))

    def relative_error(scale: float) -> np.ndarray:
        return (
            np.linalg.norm(
                unpack_covariances(pack_splats(gaussians, scale=scale), scale=scale) - exact, axis=(1, 2)
            )
            / norms
        )

    assert np.quantile(relative_error(SCENE_SCALE), 0.999) < 2e-3
    assert relative_error(1.0).max() > 0.1  # in metres, float16 loses the small Gaussians
    buffer = pack_splats(gaussians)
    assert buffer.dtype == np.uint32 and buffer.shape == (2000, 8)
    np.testing.assert_allclose(unpack_centers(buffer), gaussians.means.double().numpy(), atol=1e-7)
    rgba = unpack_rgba(buffer)
    np.testing.assert_allclose(rgba[:, :3] / 255, gaussians.colors.numpy(), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(rgba[:, 3] / 255, gaussians.opacities.numpy(), atol=0.5 / 255 + 1e-6)
    override = torch.zeros(2000, 3)
    assert (unpack_rgba(pack_splats(gaussians, override))[:, :3] == 0).all()


def test_attention_colours_run_from_dark_to_bright_with_the_chosen_tokens_weight():
    weights = torch.zeros(3, 2, 4)
    weights[0, :, 0] = 1.0  # all on audio
    weights[1, :, 1] = 1.0  # all on eye
    weights[2, :, 0] = 0.5
    weights[2, :, 3] = 0.5
    audio = attention_colors(weights, "audio")
    brightness = audio.sum(dim=1)
    assert brightness[0] > brightness[2] > brightness[1]
    assert torch.allclose(attention_colors(weights, "eye")[1], audio[0])


@pytest.mark.parametrize(
    ("remaining", "computed", "expected"),
    [(100, 50.0, 1), (100, 12.5, 50), (100, 0.0, 100), (0, 10.0, 0), (10, 24.9, 1)],
)
def test_playing_waits_for_the_frames_that_would_come_late(remaining, computed, expected):
    assert frames_to_buffer(remaining, 25.0, computed) == expected


class _FakeClip:
    count = 40


def _slow_compute(calls: list, delay: float = 0.0):
    def compute(clip, frames, mode):
        calls.append(frames.tolist())
        time.sleep(delay)
        return [np.full((2, 8), index, np.uint32) for index in frames]

    return compute


def test_clip_splats_compute_ahead_of_the_playhead_and_keep_to_their_capacity():
    calls: list = []
    splats = ClipFrames(_FakeClip(), capacity=16, compute=_slow_compute(calls))
    try:
        assert splats.wait(0, timeout=10)[0, 0] == 0
        deadline = time.monotonic() + 10
        while splats.ready_from(0) < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert splats.ready_from(0) == 16  # full: frames 16.. wait for room
        assert splats.get(20) is None
        splats.played(10)  # frames before 10 may go
        deadline = time.monotonic() + 10
        while splats.ready_from(10) < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert splats.ready_from(10) == 16 and splats.get(0) is None
        assert splats.wait(35, timeout=10)[0, 0] == 35  # a seek computes there next
        assert splats.computed_per_second > 0
        assert all(len(batch) <= 8 for batch in calls)
    finally:
        splats.close()


def test_clip_splats_report_a_failed_computation_to_whoever_waits():
    def broken(clip, frames, mode):
        raise ValueError("no")

    splats = ClipFrames(_FakeClip(), compute=broken)
    try:
        with pytest.raises(RuntimeError, match="failed") as raised:
            splats.wait(0, timeout=10)
        assert isinstance(raised.value.__cause__, ValueError)
    finally:
        splats.close()


def test_media_folder_offers_only_audio_inside_it(tmp_path):
    folder = tmp_path / "media"
    (folder / "talks").mkdir(parents=True)
    save_wav(folder / "a.wav", np.zeros(1600, np.float32), 16000)
    save_wav(folder / "talks" / "b.wav", np.zeros(1600, np.float32), 16000)
    (folder / "notes.txt").write_text("not audio")
    (folder / "face.png").write_bytes(b"png")
    secret = tmp_path / "secret.wav"
    save_wav(secret, np.zeros(1600, np.float32), 16000)
    (folder / "link.wav").symlink_to(secret)
    media = MediaFolder(folder)
    assert media.audio_files() == ["a.wav", "talks/b.wav"]
    assert media.image_files() == ["face.png"]
    assert media.resolve("talks/b.wav") == (folder / "talks" / "b.wav").resolve()
    for name in ("../secret.wav", str(secret), "link.wav"):
        with pytest.raises(AvatarError, match="outside the media folder"):
            media.resolve(name)
    for name in ("notes.txt", "missing.wav", "talks"):
        with pytest.raises(AvatarError, match="is not a"):
            media.resolve(name)


def test_uploads_are_checked_and_kept_only_in_the_viewers_temporary_directory(tmp_path):
    inbox = UploadInbox(max_bytes=200_000, sample_rate=16000)
    try:
        good = tmp_path / "good.wav"
        save_wav(good, (0.1 * np.sin(np.arange(8000) / 10)).astype(np.float32), 16000)
        path = inbox.accept("../../etc/evil name.wav", good.read_bytes())
        assert path.parent == inbox.directory and path.suffix == ".wav" and "evil" not in path.name
        with pytest.raises(AvatarError, match="over the limit"):
            inbox.accept("big.wav", b"\0" * 200_001)
        with pytest.raises(AvatarError, match="not an audio file"):
            inbox.accept("movie.exe", good.read_bytes())
        with pytest.raises(AvatarError, match="could not be decoded as audio"):
            inbox.accept("noise.wav", b"RIFF this is no wave file at all" * 10)
        assert sorted(p.name for p in inbox.directory.iterdir()) == [path.name]  # the bad ones are gone
    finally:
        inbox.close()
    assert not inbox.directory.exists()


def test_the_capture_camera_and_recorded_moves_become_a_camera_path_avatar_render_reads(tmp_path):
    viewmat = look_at_viewmat(
        np.array([0.05, -0.02, -0.6]), np.array([0.0, 0.01, 0.0]), np.array([0, -1.0, 0])
    )
    camera = capture_camera(viewmat, focal_px=900.0, size=512)
    assert camera.fov == pytest.approx(2 * math.atan(256 / 900))
    clock = [0.0]
    recorder = CameraRecorder(clock=lambda: clock[0])
    recorder.start(camera)
    moved = ViewerCamera((30.0, -2.0, -50.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0), math.radians(40))
    for t in (0.05, 0.5, 0.52, 1.0, 1.05):
        clock[0] = t
        recorder.moved(moved if t >= 0.5 else camera)
    clock[0] = 1.3
    path = recorder.stop()
    assert [key.time for key in path.keyframes] == [0.0, 0.5, 1.0, 1.3]  # 0.05, 0.52 too soon; 1.05 kept last
    assert not recorder.recording and recorder.stop() is None
    file = tmp_path / "path.json"
    path.write(file)
    track = path_cameras(CameraPath.read(file), np.array([0.0, 1.0]), 512)
    np.testing.assert_allclose(track.viewmats[0], viewmat, atol=1e-6)  # the capture's camera again
    np.testing.assert_allclose(track.focal_px[0], 900.0, rtol=1e-6)
    centre = -track.viewmats[1][:3, :3].T @ track.viewmats[1][:3, 3]
    np.testing.assert_allclose(centre, np.array(moved.position) / SCENE_SCALE, atol=1e-9)
    np.testing.assert_allclose(track.focal_px[1], 256 / math.tan(math.radians(20)), rtol=1e-6)


def test_view_refuses_bad_input_before_the_server_starts(tmp_path, capsys):
    assert main(["view", str(tmp_path / "nothing"), "--port", "0"]) == 2
    assert "run" in capsys.readouterr().err
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert main(["view", str(tmp_path), "--port", "0", "--media-dir", str(not_a_folder)]) == 2
    assert "--media-dir is not a folder" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["view", str(tmp_path), "--port", str(port), "--out", str(tmp_path / "o")]) == 2
        error = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in error and "--port" in error


@pytest.mark.slow
def test_view_refuses_a_moved_dataset_and_warns_off_loopback(sample_runs, tmp_path, capsys):
    from viewers.app import AvatarViewer
    from viewers.config import ViewConfig

    run, _ = sample_runs["audio"]
    assert (
        main(["view", str(run), "--port", "0", "--dataset", str(tmp_path / "gone"), "--out", str(tmp_path)])
        == 2
    )
    assert "is not there any more" in capsys.readouterr().err
    viewer = AvatarViewer(ViewConfig(run=run, host="0.0.0.0", port=0, out=tmp_path / "view", device="cpu"))
    try:
        assert "other machines" in capsys.readouterr().err
        assert viewer.url.startswith("http://0.0.0.0:")
    finally:
        viewer.close()
    assert not any(t.name.startswith("avatar-view") for t in threading.enumerate() if t.is_alive())


@pytest.mark.slow
def test_splats_are_widened_by_the_low_pass_of_the_renders_pixels(sample_runs):
    """Seen from the capture's camera at the density `avatar render` draws at, each widened Gaussian covers
    EPS2D px^2 more (up to the perspective's growth off the axis): what the low-pass gave it in the render."""
    from avatar.core.pinhole import resampled_intrinsics
    from avatar.drive.driver import load_fitted
    from avatar.drive.video import drive_with_audio

    run, _ = sample_runs["audio"]
    fitted = load_fitted(run, device="cpu", backend="torch")
    clip = drive_with_audio(fitted, fitted.dataset.layout.audio)
    avatar = frame_avatars(clip, np.array([3]))[0]
    wide = widened(fitted, avatar)
    assert torch.equal(wide.means, avatar.means) and torch.equal(wide.quats, avatar.quats)
    size = fitted.bust_resolution
    K = torch.from_numpy(resampled_intrinsics(fitted.dataset.tracking.intrinsics, fitted.dataset.size, size))
    view = torch.from_numpy(fitted.avatar_pose)
    covariances = [
        project_gaussians(
            g.means.double(), g.quats.double(), g.scales.double(), view, K, size, size, eps2d=0.0
        )
        for g in (avatar, wide)
    ]
    seen = (covariances[0].radii > 0) & (covariances[1].radii > 0)
    assert seen.float().mean() > 0.9
    added = (covariances[1].cov2d - covariances[0].cov2d)[seen]
    diagonal = torch.stack([added[:, 0, 0], added[:, 1, 1]], dim=-1)
    assert diagonal.min() > EPS2D * 0.99 and diagonal.max() < EPS2D * 1.2  # float32 scales round


def test_server_drawing_sees_the_avatar_as_the_renderer_does_from_the_same_camera():
    from scipy.spatial.transform import Rotation

    from avatar.render.rasterize import render_gaussians
    from viewers.server_render import PageCamera, draw, image_size, viewmat

    gaussians = _gaussians(3000, seed=2)
    gaussians = GaussianSet(
        gaussians.means * 0.5, gaussians.quats, gaussians.scales * 0.3, gaussians.opacities, gaussians.colors
    )
    view = look_at_viewmat(np.array([0.1, -0.05, -0.6]), np.zeros(3), np.array([0, -1.0, 0]))
    rotation = view[:3, :3].T  # R_world_camera
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    centre = -rotation @ view[:3, 3]
    focal = 70.0
    for width, height in ((64, 64), (96, 64)):
        page = PageCamera(
            (w, x, y, z), tuple(centre * SCENE_SCALE), 2 * math.atan(height / 2 / focal), width, height
        )
        np.testing.assert_allclose(viewmat(page), view, atol=1e-9)
        assert image_size(page) == (width, height)
        image = draw(gaussians, page, np.zeros((10, 10, 3), np.uint8))
        assert image.shape == (height, width, 3)
        side = max(width, height)
        K = torch.tensor([[focal, 0, side / 2], [0, focal, side / 2], [0, 0, 1]], dtype=torch.float32)
        direct = render_gaussians(gaussians, torch.from_numpy(view).float(), K, side).rgb.numpy()
        top, left = (side - height) // 2, (side - width) // 2
        expected = (np.clip(direct[top : top + height, left : left + width], 0, 1) * 255).round()
        assert np.abs(image.astype(float) - expected).max() <= 1.0
        assert image.mean() > 5  # the avatar is in view
    large = PageCamera((w, x, y, z), tuple(centre * SCENE_SCALE), 0.5, 1920, 1080)
    assert image_size(large) == (256, 144)
