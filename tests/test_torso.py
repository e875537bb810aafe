"""The Gaussian torso: rigid transforms of Gaussians, the torso model and its initialisation, its file."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatar.core.errors import AvatarError
from avatar.core.pinhole import centered_intrinsics, project
from avatar.model.gaussians import CanonicalGaussians, GaussianSet
from avatar.model.rigid import (
    concatenate,
    quat_to_rotmat,
    rotmat_to_rotvec,
    rotvec_to_quat,
    transform_gaussians,
)
from avatar.model.torso import TorsoModel, bust_gaussians
from avatar.model.torso_init import NECK_BEHIND_HEAD_M, init_torso
from avatar.render.projection import quat_scale_to_covar
from avatar.render.rasterize import render_gaussians
from avatar.runs.torso_file import load_torso, save_torso
from avatar.train.torso_fit import Layer, layered


def _pose(rotvec, translation) -> torch.Tensor:
    pose = torch.eye(4)
    pose[:3, :3] = torch.from_numpy(Rotation.from_rotvec(rotvec).as_matrix()).float()
    pose[:3, 3] = torch.tensor(translation)
    return pose


def _gaussians(n: int, seed: int = 0) -> GaussianSet:
    g = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=torch.randn(n, 3, generator=g) * 0.1,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        scales=torch.rand(n, 3, generator=g) * 0.01 + 0.001,
        opacities=torch.rand(n, generator=g),
        colors=torch.rand(n, 3, generator=g),
    )


@pytest.mark.parametrize("rotvec", [[0.3, -0.2, 0.5], [0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [0.0, 2.5, 0.0]])
def test_rotation_conversions_agree_with_scipy(rotvec):
    v = torch.tensor([rotvec], dtype=torch.float64)
    R = quat_to_rotmat(rotvec_to_quat(v))[0]
    np.testing.assert_allclose(R.numpy(), Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rotmat_to_rotvec(R[None])[0].numpy(), rotvec, atol=1e-7)


def test_a_rigid_transform_moves_means_and_turns_covariances():
    gaussians = _gaussians(50)
    pose = _pose([0.2, -0.4, 0.1], [0.01, 0.02, 0.5])
    moved = transform_gaussians(gaussians, pose[:3, :3], pose[:3, 3])
    torch.testing.assert_close(moved.means, gaussians.means @ pose[:3, :3].T + pose[:3, 3])
    before = quat_scale_to_covar(gaussians.quats, gaussians.scales)
    after = quat_scale_to_covar(moved.quats, moved.scales)
    torch.testing.assert_close(after, pose[:3, :3] @ before @ pose[:3, :3].T, atol=1e-7, rtol=1e-4)


def _torso(n: int = 40) -> TorsoModel:
    canonical = CanonicalGaussians.from_activated(_gaussians(n, seed=1))
    weights = torch.linspace(0, 1, n)
    return TorsoModel(canonical, weights, torch.eye(4))


def test_the_neck_follows_the_head_and_the_shoulders_stay():
    torso = _torso()
    canonical = torso.gaussians.activated()
    with torch.no_grad():
        at_rest = torso(torch.eye(4))
        torch.testing.assert_close(at_rest.means, canonical.means)  # an untrained body stands still
        pose = _pose([0.0, 0.3, 0.0], [0.0, 0.01, 0.0])
        turned = torso(pose)
    followed = canonical.means[-1] @ pose[:3, :3].T + pose[:3, 3]
    torch.testing.assert_close(turned.means[-1], followed)  # weight 1: moves with the head
    torch.testing.assert_close(turned.means[0], canonical.means[0])  # weight 0: the body's (still) motion
    middle = len(canonical.means) // 2  # in between, in between
    assert (
        0
        < (turned.means[middle] - canonical.means[middle]).norm()
        < (followed - canonical.means[-1]).norm() + 0.1
    )
    loss = torso(pose).means.sum()
    loss.backward()
    assert torso.body_motion[-1].weight.grad.abs().sum() > 0  # the head's pose can move the body


def test_a_bust_is_the_head_moved_into_the_avatar_frame_then_the_torso():
    head, torso = _gaussians(30), _gaussians(20, seed=2)
    pose = _pose([0.1, 0.0, 0.0], [0.0, 0.0, 0.1])
    bust = bust_gaussians(head, pose, torso)
    assert bust.num == 50
    torch.testing.assert_close(bust.means[:30], head.means @ pose[:3, :3].T + pose[:3, 3])
    torch.testing.assert_close(bust.means[30:], torso.means)


def test_the_initial_torso_lies_on_the_mask_behind_the_neck():
    size = 128
    K = centered_intrinsics(150.0, size)
    pose = np.eye(4)
    pose[:3, 3] = [0.0, -0.02, 0.5]  # the avatar frame's origin half a metre before the camera
    mask = np.zeros((size, size), np.uint8)
    mask[90:, 20:108] = 255  # shoulders at the bottom of the frame
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 2] = 200
    chin = np.array([0.0, 0.12, 0.0])  # the mask reaches from 0.11 m below the origin to 0.26 m
    torso = init_torso(image, mask, K, pose, chin, 500, seed=3)
    means = torso.gaussians.means.detach().numpy()
    pixels = project(means, pose[:3, :3], pose[:3, 3], K)
    assert (pixels[:, 1] >= 89).all() and (pixels[:, 0] >= 19).all() and (pixels[:, 0] <= 109).all()
    depth = means[:, 2] + pose[2, 3]
    assert depth.min() >= 0.5 + NECK_BEHIND_HEAD_M - 1e-6
    centre, sides = np.abs(pixels[:, 0] - 64) < 8, np.abs(pixels[:, 0] - 64) > 35
    assert depth[sides].mean() > depth[centre].mean() + 0.01  # the shoulders recede
    colours = torso.gaussians.activated().colors.detach().numpy()
    np.testing.assert_allclose(colours.mean(0), [0, 0, 200 / 255], atol=1e-3)
    weights = torso.neck_weights.numpy()
    assert weights.min() >= 0 and weights.max() <= 1
    assert weights[means[:, 1] < chin[1]].min() == 1.0 and weights[means[:, 1] > chin[1] + 0.08].max() == 0.0
    with pytest.raises(AvatarError, match="too little torso"):
        init_torso(image, np.zeros_like(mask), K, pose, chin, 10)


def test_the_torso_file_round_trips_and_refuses_a_stale_or_broken_one(tmp_path):
    torso = _torso()
    path = tmp_path / "torso.safetensors"
    assert load_torso(path, 100) is None  # a run without a torso
    save_torso(path, torso, 100)
    loaded = load_torso(path, 100)
    for name, value in torso.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    with pytest.raises(AvatarError, match="step 100") as error:
        load_torso(path, 200)
    assert "--resume" in str(error.value) and str(path) in str(error.value)
    path.write_bytes(b"garbage")
    with pytest.raises(AvatarError, match="unreadable"):
        load_torso(path, 100)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("torso_shift", [0.6, -0.6])  # behind the head, then before it
def test_the_torso_fits_layers_are_the_one_pass_render_where_head_and_torso_do_not_interleave(
    size, torso_shift
):
    head, torso = _gaussians(40, seed=4), _gaussians(60, seed=5)
    head = replace(head, scales=head.scales * 3)
    torso = replace(
        torso,
        means=torso.means * torch.tensor([2.0, 2.0, 0.5]) + torch.tensor([0.0, 0.0, torso_shift]),
        scales=torso.scales * 5,
    )
    viewmat = torch.eye(4)
    viewmat[2, 3] = 1.0
    K = torch.from_numpy(centered_intrinsics(size * 1.2, size)).float()
    background = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(6))
    one_pass = render_gaussians(concatenate([head, torso]), viewmat, K, size, background, backend="torch")
    head_layer = Layer.render(head, viewmat, K, size, "torch")
    torso_layer = Layer.render(torso, viewmat, K, size, "torch")
    both = (head_layer.alpha * torso_layer.alpha).mean()
    assert both > 0.01 and (torso_layer.alpha - both).mean() > 0.01  # they overlap, and each is seen alone
    rgb, alpha = layered(head_layer, torso_layer, background)
    torch.testing.assert_close(rgb, one_pass.rgb, atol=2e-3, rtol=0)
    torch.testing.assert_close(alpha, one_pass.alpha, atol=2e-3, rtol=0)
