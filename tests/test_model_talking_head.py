from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar.audio.driving import PHONE_CLASSES
from avatar.core.errors import AvatarError
from avatar.model.deformation import DeformationConfig, FrameConditions
from avatar.model.head_init import init_head_gaussians
from avatar.model.talking_head import TalkingHead, frame_conditions
from avatar.train.densify import DensifyState, densify_and_prune, remap_adam_state
from tests.test_model_head_init import synthetic_landmarks

SILENCE = -1.628


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are small: a second intra-op thread gains nothing and stalls while the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CHANNELS = 80 + PHONE_CLASSES  # log-mel bands and phone channels of the driving features


def make_head(n: int = 500, *, audio_enabled: bool = True, seed: int = 0) -> TalkingHead:
    torch.manual_seed(seed)
    gaussians = init_head_gaussians(synthetic_landmarks(), n, seed=seed)
    return TalkingHead(
        gaussians, DeformationConfig.tiny(), audio_enabled=audio_enabled, hash_grid_backend="torch"
    )


def clip_arrays(frames: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rotations = np.stack([np.eye(3)] * frames)
    translations = np.tile([0.0, 0.0, 0.5], (frames, 1)) + rng.normal(scale=0.01, size=(frames, 3))
    features = np.broadcast_to(
        np.arange(frames, dtype=np.float16)[:, None, None], (frames, 16, CHANNELS)
    ).copy()
    return {
        "audio_features": features,  # frame i's window is filled with the value i
        "eye_openness": rng.uniform(0, 1, frames),
        "rotations": rotations,
        "translations": translations,
    }


def test_forward_returns_one_gaussian_set_per_frame():
    head = make_head(500)
    arrays = clip_arrays()
    conditions = frame_conditions(**arrays, frame_indices=[0, 5, 11], window=head.window)
    sets, attention = head(conditions)
    assert len(sets) == 3 and attention.shape == (3, 500, head.config.heads, 4)
    canonical = head.gaussians.activated()
    for gaussians in sets:
        assert gaussians.num == 500
        for name in ("means", "quats", "scales", "opacities", "colors"):
            value = getattr(gaussians, name)
            assert value.shape == getattr(canonical, name).shape and value.dtype == torch.float32
            torch.testing.assert_close(value, getattr(canonical, name), atol=1e-6, rtol=1e-6)  # zero deltas
    undeformed, none = head(conditions, deform=False)
    assert none is None and len(undeformed) == 3 and undeformed[0].means is head.gaussians.means
    assert len(head(None, deform=False)[0]) == 1
    with pytest.raises(ValueError):
        head(None)


def test_gradients_reach_the_gaussians_and_every_deformation_group_after_one_step():
    head = make_head(400)
    conditions = frame_conditions(**clip_arrays(), frame_indices=[2, 7], window=head.window)
    gen = torch.Generator().manual_seed(0)
    weights = {
        name: torch.randn(2, 400, width, generator=gen)
        for name, width in (("means", 3), ("quats", 4), ("scales", 3), ("opacities", 1), ("colors", 3))
    }
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)

    def toy_loss() -> torch.Tensor:
        sets, attention = head(conditions)
        field = head.deformation
        loss = attention[..., 0].mean() + field.mouth_motion(conditions.audio).sum()
        for b, gaussians in enumerate(sets):
            for name, weight in weights.items():
                value = getattr(gaussians, name).reshape(400, -1)
                loss = loss + (value * weight[b]).sum() + value.square().sum()
        return loss

    toy_loss().backward()
    optimizer.step()
    optimizer.zero_grad()
    toy_loss().backward()
    missing = [
        name for name, p in head.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0
    ]
    assert not missing
    names = [name for name, _ in head.named_parameters()]
    for group in (
        "gaussians.means",
        "gaussians.color_logits",
        "deformation.hash_grid",
        "deformation.motion_predictors.0.tokenizer.encoder",
        "deformation.motion_predictors.0.tokenizer.smoother",
        "deformation.eye_mlp",
        "deformation.view_mlp",
        "deformation.null_token",
    ):
        assert any(name.startswith(group) for name in names), group


def test_frame_conditions_windows_eye_and_view():
    arrays = clip_arrays(frames=12)
    conditions = frame_conditions(**arrays, frame_indices=np.array([0, 6, 11]), window=5)
    assert conditions.audio.shape == (3, 5, 16, CHANNELS) and conditions.audio.dtype == torch.float32
    frames_in_windows = conditions.audio[:, :, 0, 0]
    assert frames_in_windows.tolist() == [[0, 0, 0, 1, 2], [4, 5, 6, 7, 8], [9, 10, 11, 11, 11]]
    torch.testing.assert_close(
        conditions.eye, torch.tensor(arrays["eye_openness"][[0, 6, 11]], dtype=torch.float32)
    )
    # camera centre in head coordinates: -R^T t, normalised; for R = I the camera is at -t
    expected = -arrays["translations"][[0, 6, 11]]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    torch.testing.assert_close(conditions.view, torch.tensor(expected, dtype=torch.float32))
    # numpy and torch inputs give the same conditions
    as_tensors = {name: torch.from_numpy(np.asarray(value)) for name, value in arrays.items()}
    again = frame_conditions(**as_tensors, frame_indices=torch.tensor([0, 6, 11]), window=5)
    for name in ("audio", "eye", "view"):
        torch.testing.assert_close(getattr(again, name), getattr(conditions, name))
    with pytest.raises(IndexError):
        frame_conditions(**arrays, frame_indices=[12], window=5)
    assert conditions.motion is None  # the audio's motion, predicted when rendered
    motion = np.arange(12 * 4 * 3, dtype=np.float64).reshape(12, 4, 3)
    given = frame_conditions(**arrays, frame_indices=np.array([0, 6, 11]), window=5, motion=motion)
    torch.testing.assert_close(given.motion, torch.tensor(motion[[0, 6, 11]], dtype=torch.float32))


def test_view_direction_of_a_rotated_head():
    yaw = np.radians(30.0)
    R = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    t = np.array([0.0, 0.0, 0.5])
    arrays = clip_arrays(frames=1)
    arrays["rotations"], arrays["translations"] = R[None], t[None]
    view = frame_conditions(**arrays, frame_indices=[0], window=3).view[0].double()
    camera_centre = -R.T @ t  # the camera sits at this point of the head frame
    torch.testing.assert_close(view, torch.tensor(camera_centre / np.linalg.norm(camera_centre)))
    assert float(view[2]) < 0  # in front of the face (z points into the head)


def test_checkpoint_round_trip_with_safetensors(tmp_path):
    head = make_head(300, audio_enabled=False)
    for parameter in head.deformation.parameters():  # make the outputs non-trivial
        parameter.data.add_(torch.randn_like(parameter) * 0.05)
    # densification changes the Gaussian count away from the initial one
    state = DensifyState.zeros(head.gaussians.num)
    state.accumulate(torch.ones(head.gaussians.num, 2), torch.ones(head.gaussians.num, dtype=torch.bool))
    densify_and_prune(
        head.gaussians,
        state,
        grad_threshold=0.5,
        scale_threshold=1.0,
        min_opacity=0.0,
        max_count=350,
        extent=0.15,
    )
    assert head.gaussians.num == 350
    save_file(head.state_dict(), tmp_path / "head.safetensors")
    (tmp_path / "head.json").write_text(json.dumps(head.config_dict()))

    loaded = TalkingHead.from_config(
        json.loads((tmp_path / "head.json").read_text()), hash_grid_backend="torch"
    )
    loaded.load_state_dict(load_file(tmp_path / "head.safetensors"))
    assert loaded.gaussians.num == 350 and not loaded.deformation.audio_enabled
    assert loaded.config == head.config
    torch.testing.assert_close(loaded.deformation.bounds_min, head.deformation.bounds_min)
    conditions = frame_conditions(**clip_arrays(), frame_indices=[3, 4], window=head.window)
    with torch.no_grad():
        expected, expected_attention = head(conditions)
        actual, actual_attention = loaded(conditions)
    torch.testing.assert_close(actual_attention, expected_attention)
    for a, b in zip(actual, expected):
        for name in ("means", "quats", "scales", "opacities", "colors"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name))
    assert all(isinstance(value, torch.Tensor) for value in head.state_dict().values())


def test_a_training_step_through_the_rasterizer():
    """Render the initial head, fit an image for a few steps, densify with the real screen-space gradients."""
    from avatar.render import intrinsics, rasterize

    head = make_head(1500)
    size = 32
    K = intrinsics(40.0, size / 2, size / 2)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 0.5  # frontal camera 0.5 m in front of the head origin
    arrays = clip_arrays()
    arrays["translations"] = np.tile([0.0, 0.0, 0.5], (12, 1))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    target = torch.zeros(size, size, 3)
    target[..., 0] = 1.0  # a red face
    state = DensifyState.zeros(head.gaussians.num)
    losses = []
    for step in range(4):
        conditions = frame_conditions(**arrays, frame_indices=[step], window=head.window)
        (gaussians,), _ = head(conditions)
        out = rasterize(
            gaussians.means,
            gaussians.quats,
            gaussians.scales,
            gaussians.opacities,
            gaussians.colors,
            viewmat,
            K,
            size,
            size,
            background=torch.zeros(3),
        )
        if step == 0:
            alpha = out.alpha.detach()
            assert float(alpha[size // 2, size // 2]) > 0.5  # the head covers the image centre
            assert float(alpha[0, 0]) < 0.05  # and not the corner
        out.means2d.retain_grad()
        loss = (out.rgb - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state.accumulate(out.means2d.grad, out.radii > 0, image_size=(size, size))
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert float(state.grad_norm_sum.sum()) > 0
    before = head.gaussians.num
    result = densify_and_prune(
        head.gaussians,
        state,
        grad_threshold=float(state.mean_grad().quantile(0.9)),
        scale_threshold=0.01,
        min_opacity=0.005,
        max_count=before + 100,
        extent=0.15,
    )
    remap_adam_state(optimizer, result.change)
    assert before < head.gaussians.num <= before + 100
    conditions = frame_conditions(**arrays, frame_indices=[5], window=head.window)
    (gaussians,), _ = head(conditions)
    gaussians.colors.sum().backward()
    optimizer.step()  # the optimiser follows the new rows


def test_audio_enabled_flag_is_in_the_config():
    head = make_head(50, audio_enabled=False)
    config = head.config_dict()
    assert config["audio_enabled"] is False and config["num_gaussians"] == 50
    assert TalkingHead.from_config(config, hash_grid_backend="torch").gaussians.num == 50
    with pytest.raises(AvatarError):
        TalkingHead.from_config({**config, "version": 99})


def test_conditions_move_between_devices():
    conditions = FrameConditions(
        audio=torch.zeros(1, 9, 16, CHANNELS), eye=torch.ones(1), view=torch.tensor([[0.0, 0, -1]])
    )
    moved = conditions.to("cpu")
    assert moved.batch_size == 1 and moved.audio.device.type == "cpu"


def test_mouth_scale_scales_the_mouth_motion_s_change_from_silence():
    head = make_head(300)
    with torch.no_grad():  # a deformation that depends on the audio
        for param in head.deformation.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    arrays = clip_arrays()
    arrays["audio_features"] = np.random.default_rng(1).normal(size=arrays["audio_features"].shape)
    conditions = frame_conditions(**arrays, frame_indices=[3, 7], window=head.window)
    silent = frame_conditions(
        **{**arrays, "audio_features": np.zeros_like(arrays["audio_features"])},
        frame_indices=[3, 7],
        window=head.window,
    )
    field = head.deformation
    with torch.no_grad():
        normal, _ = head(conditions)
        rest, _ = head(silent)
        motion, rest_motion = field.articulation(conditions), field.articulation(silent)
        assert (motion - rest_motion).abs().max() > 1e-5  # the audio does move the mouth
        for scale, expected in ((0.0, rest), (1.0, normal)):
            scaled, _ = head(conditions, mouth_scale=scale)
            for b in range(2):
                torch.testing.assert_close(scaled[b].means, expected[b].means, atol=1e-6, rtol=1e-5)
        half = replace(conditions, motion=rest_motion + 0.5 * (motion - rest_motion))
        expected_half, _ = head(half)
        scaled, _ = head(conditions, mouth_scale=0.5)
        torch.testing.assert_close(scaled[0].means, expected_half[0].means)
        assert (scaled[0].means - normal[0].means).abs().max() > 1e-6
