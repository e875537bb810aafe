"""Fast tests of the fitting pieces: checkpoints, schedules, the head window, compositing, pose loops."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from avatar.core.errors import AvatarError
from avatar.core.records import encode
from avatar.data.head_window import HeadWindow
from avatar.drive.compositor import head_over, to_uint8, torso_coloured_by_frame, torso_over_background
from avatar.drive.video import pingpong
from avatar.runs.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from avatar.runs.settings import PRESETS, FitConfig
from avatar.train.trainer import FitRun, choose_preset


def test_checkpoint_round_trip_keeps_previous_and_drops_older(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, {"w": torch.full((3,), float(step))}, {"note": step})
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.safetensors")) == [
        "checkpoint_0000020.safetensors",
        "checkpoint_0000030.safetensors",
    ]
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.step == 30 and checkpoint.meta == {"note": 30}
    assert torch.equal(checkpoint.tensors["w"], torch.full((3,), 30.0))
    assert not list(tmp_path.glob("*.partial"))


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(AvatarError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    path = save_checkpoint(tmp_path, 5, {"w": torch.arange(1000.0)}, {})
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AvatarError, match="corrupt"):
        load_checkpoint(tmp_path)
    path.unlink()
    with pytest.raises(AvatarError, match="missing"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{not json")
    assert has_checkpoint(tmp_path)
    with pytest.raises(AvatarError, match="unreadable"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"backend": "cuda"}, "--backend cuda runs on a CUDA GPU"),
        ({"backend": "gsplat"}, "--backend gsplat runs on a CUDA GPU"),
        ({"hash_grid": "cuda"}, "--hash-grid cuda runs on a CUDA GPU"),
        ({"hash_grid": "tcnn"}, "--hash-grid tcnn runs on a CUDA GPU"),
    ],
)
def test_fit_refuses_gpu_backends_on_the_cpu_before_any_work(tmp_path, flags, message):
    out = tmp_path / "run"
    config = FitConfig(dataset=tmp_path / "no_dataset", out=out, device="cpu", **flags)
    with pytest.raises(AvatarError, match=message) as caught:
        FitRun(config)
    assert "--device cuda" in caught.value.fix
    assert not out.exists()


def test_schedule_scaling_keeps_stage_proportions():
    tiny = PRESETS["tiny"]
    scaled = tiny.scaled_to(tiny.total_steps // 10)
    assert scaled.total_steps == tiny.total_steps // 10
    assert abs(scaled.steps_canonical - tiny.steps_canonical / 10) <= 1
    assert [scaled.stage(s) for s in (0, scaled.steps_canonical, scaled.total_steps - 1)] == [
        "canonical",
        "audio",
        "mouth",
    ]
    config = FitConfig(dataset=".", out=".", preset="tiny", steps=50, resolution=64)
    assert config.settings("tiny").total_steps == 50 and config.settings("tiny").resolution == 64
    assert json.loads(json.dumps(encode(config)))["preset"] == "tiny"


def test_head_window_intrinsics_map_crop_pixels_to_window_pixels():
    K = np.array([[500.0, 0, 256], [0, 500, 256], [0, 0, 1]])
    window = HeadWindow(100, 50, 200)
    Kw = window.intrinsics(K, 100)
    point = np.array([0.02, -0.03, 0.5])
    crop = (K @ point)[:2] / point[2]
    win = (Kw @ point)[:2] / point[2]
    assert np.allclose(win, (crop - [100, 50]) * 0.5)
    image = np.arange(512 * 512 * 3, dtype=np.uint8).reshape(512, 512, 3)
    assert window.cut(image, 200).shape == (200, 200, 3)
    assert np.array_equal(window.cut(image, 200), image[50:250, 100:300])


def test_compositor_puts_head_over_torso_over_background():
    size = 64
    frame = np.full((size, size, 3), 200, np.uint8)
    background = np.full((size, size, 3), 10, np.uint8)
    masks = np.zeros((size, size, 4), np.uint8)
    masks[40:, :, 2] = 255  # torso at the bottom
    base = torso_over_background(frame, masks, background, feather_px=0)
    assert np.allclose(base[50, 5], 200 / 255) and np.allclose(base[5, 5], 10 / 255)
    window = HeadWindow(16, 0, 32)
    head_rgb = np.zeros((16, 16, 3), np.float32)
    head_alpha = np.zeros((16, 16, 1), np.float32)
    head_rgb[4:12, 4:12] = 1.0
    head_alpha[4:12, 4:12] = 1.0
    out = head_over(base, head_rgb, head_alpha, window)
    assert np.allclose(out[16, 32], 1.0)  # head, resampled to the window's 32 px
    assert np.allclose(out[2, 2], 10 / 255) and np.allclose(out[60, 60], 200 / 255)
    head_alpha[6, 6] = 0.5  # a half-covered pixel of the head
    head_rgb[6, 6] = 0.5 * np.array([1.0, 0.2, 0.0])  # premultiplied
    same_size = HeadWindow(16, 0, 16)
    clear = head_over(
        torso_over_background(frame, masks, None, feather_px=0), head_rgb, head_alpha, same_size
    )
    assert clear.shape == (size, size, 4)
    rgba = to_uint8(clear)  # straight alpha, as video and PNG files keep it
    assert rgba[2, 2, 3] == 0 and rgba[60, 60].tolist() == [200, 200, 200, 255]
    assert rgba[5, 21].tolist() == [255, 255, 255, 255]  # the head's opaque part
    assert rgba[6, 22].tolist() == [255, 51, 0, 128]


def test_a_torso_coloured_by_the_frame_lets_the_frame_show_through_it_in_its_depth_order():
    size = 48
    yy, xx = np.mgrid[:size, :size]
    head_alpha = ((yy - 18) ** 2 + (xx - 24) ** 2 < 12**2).astype(np.float32)[..., None]
    torso_alpha = ((yy > 26) & (np.abs(xx - 24) < 20)).astype(np.float32)[..., None]
    torso_alpha[30:32] *= 0.5  # a half-covered row of the torso
    torso_alpha[26:31, 22:27] = 1.0  # a collar in front of the chin
    weight = torso_alpha  # the torso's part: it is in front wherever it is
    head_part = head_alpha * (1 - torso_alpha)
    head_colour, torso_colour = np.array([0.9, 0.6, 0.5], np.float32), np.array([0.1, 0.1, 0.8], np.float32)
    torso_rgb = weight * torso_colour
    rgb, alpha = head_part * head_colour + torso_rgb, head_part + weight
    frame = np.zeros((size, size, 3), np.uint8)
    frame[..., 1] = 200  # the real torso is green
    masks = np.zeros((size, size, 4), np.uint8)
    masks[28:, :, 2] = 255  # the frame's torso starts 2 rows below the rendered one
    masks[:28, 12:37, 1] = 255  # above it, the frame's head
    green = np.array([0, 200 / 255, 0])
    for background in (np.full((size, size, 3), 50, np.uint8), None):
        under = torso_over_background(frame, masks, background, feather_px=0)
        out = torso_coloured_by_frame(rgb, torso_rgb, weight, under, masks, feather_px=0)
        out = head_over(under, out, alpha, HeadWindow(0, 0, size))
        assert np.allclose(out[40, 24, :3], green)  # the torso wears the frame's colour
        assert np.allclose(
            out[31, 5, :3], green
        )  # half covered: the rest of the pixel is the frame's torso too
        assert np.allclose(out[29, 24, :3], green)  # the collar in front of the chin hides the head
        assert np.allclose(
            out[27, 24, :3], torso_colour
        )  # the frame shows its head there: the Gaussians' own
        assert np.allclose(out[18, 24, :3], head_colour)  # the head where nothing is in front of it
    assert np.allclose(out[27, 5], np.append(torso_colour, 1))  # transparent: nothing of the frame to show
    assert np.allclose(out[5, 5], 0)  # nothing covers it


def test_pingpong_runs_back_and_forth_without_jumps():
    frames = np.array([3, 4, 5, 6])
    assert pingpong(frames, 10).tolist() == [3, 4, 5, 6, 5, 4, 3, 4, 5, 6]
    assert pingpong(np.array([7]), 3).tolist() == [7, 7, 7]


def test_fit_without_a_preset_on_the_cpu_says_so_before_any_work(tmp_path):
    out = tmp_path / "run"
    config = FitConfig(dataset=tmp_path / "no_dataset", out=out, device="cpu")
    with pytest.raises(AvatarError, match="no --preset was given") as caught:
        choose_preset(config, torch.device("cpu"))
    assert "--preset tiny" in caught.value.fix
    assert choose_preset(config, torch.device("cuda")) == "default"
    assert choose_preset(replace(config, preset="default"), torch.device("cpu")) == "default"
    assert not out.exists()


@pytest.mark.parametrize("command", ["render", "eval"])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys, command):
    from avatar.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    flag = "--out" if command == "render" else "--json"
    target = blocker / "out.mp4"  # a folder that cannot be made: its parent is a file
    extra = ["--audio", str(tmp_path / "speech.wav")] if command == "render" else []
    assert main([command, str(tmp_path / "no_run"), *extra, flag, str(target)]) == 2
    error = capsys.readouterr().err
    assert f"{flag} cannot be written there" in error and str(target) in error and "no run.json" not in error
    assert main([command, str(tmp_path / "no_run"), *extra, flag, str(tmp_path)]) == 2
    assert f"{flag} is a directory" in capsys.readouterr().err
