"""The pure-PyTorch rasterizer against a brute-force renderer, finite differences and hand-computed cases."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avatar.core.errors import AvatarError
from avatar.render import (
    ALPHA_MIN,
    TRANSMITTANCE_MIN,
    alpha_half_extents,
    bin_gaussians,
    intrinsics,
    look_at,
    project_gaussians,
    rasterize,
    rasterize_to_pixels_torch,
)

REPO = Path(__file__).resolve().parents[1]


def random_scene(num: int, width: int, height: int, seed: int, channels: int = 3, dtype=torch.float64):
    """Gaussians 1-3 units in front of an identity camera, spilling a little past the image edges."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=dtype)
    focal = 0.9 * width
    K = intrinsics(focal, 0.47 * width, 0.53 * height, focal_y=1.1 * focal, dtype=dtype)
    z = 1 + 2 * rand(num)
    pixel = torch.stack([(1.4 * rand(num) - 0.2) * width, (1.4 * rand(num) - 0.2) * height], dim=-1)
    x = (pixel[:, 0] - K[0, 2]) * z / K[0, 0]
    y = (pixel[:, 1] - K[1, 2]) * z / K[1, 1]
    sigma_pixels = torch.exp(math.log(0.3) + (math.log(8.0) - math.log(0.3)) * rand(num, 3))
    return dict(
        means=torch.stack([x, y, z], dim=-1),
        quats=torch.randn(num, 4, generator=gen, dtype=dtype),
        scales=sigma_pixels * z[:, None] / focal,
        opacities=0.02 + 0.98 * rand(num),
        colors=rand(num, channels),
        viewmat=torch.eye(4, dtype=dtype),
        K=K,
        width=width,
        height=height,
    )


def brute_force_render(projection, opacities, colors, width, height, tile_size=16, counts=None):
    """Every pixel against every Gaussian, front to back, one Gaussian at a time: rgb, alpha, depth.

    As in gsplat, a Gaussian reaches only the pixels of the tiles that its square (mean -/+ radius) overlaps.
    `counts`, when given, receives the number of clamped alphas and of pixels that stopped compositing.
    """
    dtype = colors.dtype
    rows = torch.arange(height, dtype=dtype)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=dtype)[None, :].expand(height, width)
    tile_left = torch.div(cols, tile_size, rounding_mode="floor") * tile_size
    tile_top = torch.div(rows, tile_size, rounding_mode="floor") * tile_size
    transmittance = torch.ones(height, width, dtype=dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    clamped = 0
    rgb = torch.zeros(height, width, colors.shape[1], dtype=dtype)
    depth = torch.zeros(height, width, dtype=dtype)
    for n in torch.argsort(projection.depths, stable=True).tolist():
        radius = float(projection.radii[n])
        if radius <= 0:
            continue
        mx, my = projection.means2d[n].unbind()
        a, b, c = projection.conics[n].unbind()
        in_tiles = (
            (mx - radius < tile_left + tile_size)
            & (mx + radius > tile_left)
            & (my - radius < tile_top + tile_size)
            & (my + radius > tile_top)
        )
        dx, dy = cols + 0.5 - mx, rows + 0.5 - my
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        raw_alpha = opacities[n] * torch.exp(-sigma)
        alpha = torch.clamp(raw_alpha, max=0.99)
        use = in_tiles & ~done & (alpha >= 1 / 255)
        clamped += int((use & (raw_alpha > 0.99)).sum())
        next_transmittance = transmittance * (1 - alpha)
        stop = use & (next_transmittance < 1e-4)
        done |= stop
        use &= ~stop
        weight = torch.where(use, alpha * transmittance, torch.zeros_like(alpha))
        rgb += weight[..., None] * colors[n]
        depth += weight * projection.depths[n]
        transmittance = torch.where(use, next_transmittance, transmittance)
    if counts is not None:
        counts.update(clamped=clamped, terminated=int(done.sum()))
    return rgb, 1 - transmittance[..., None], depth[..., None]


def render(scene, **kwargs):
    return rasterize(
        scene["means"],
        scene["quats"],
        scene["scales"],
        scene["opacities"],
        scene["colors"],
        scene["viewmat"],
        scene["K"],
        scene["width"],
        scene["height"],
        **kwargs,
    )


def project(scene):
    return project_gaussians(
        scene["means"],
        scene["quats"],
        scene["scales"],
        scene["viewmat"],
        scene["K"],
        scene["width"],
        scene["height"],
    )


@pytest.mark.parametrize(
    "num, width, height",
    [(1, 16, 16), (7, 16, 16), (30, 33, 17), (100, 48, 48), (300, 96, 64), (300, 61, 45)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(num, width, height, seed):
    scene = random_scene(num, width, height, seed)
    out = render(scene)
    rgb, alpha, depth = brute_force_render(project(scene), scene["opacities"], scene["colors"], width, height)
    assert out.rgb.shape == (height, width, 3) and out.alpha.shape == out.depth.shape == (height, width, 1)
    torch.testing.assert_close(out.rgb, rgb, atol=1e-9, rtol=0)
    torch.testing.assert_close(out.alpha, alpha, atol=1e-9, rtol=0)
    torch.testing.assert_close(out.depth, depth, atol=1e-9, rtol=0)


def test_matches_brute_force_with_early_termination_and_many_channels():
    scene = random_scene(300, 40, 40, seed=3, channels=5)
    scene["opacities"] = 0.5 + 0.5 * scene["opacities"]
    scene["opacities"][::5] = 1.0
    scene["scales"] = scene["scales"] * 1.5
    counts = {}
    rgb, alpha, depth = brute_force_render(
        project(scene), scene["opacities"], scene["colors"], 40, 40, counts=counts
    )
    assert counts["terminated"] > 1000 and counts["clamped"] > 10  # of 1600 pixels
    out = render(scene)
    torch.testing.assert_close(out.rgb, rgb, atol=1e-9, rtol=0)
    torch.testing.assert_close(out.alpha, alpha, atol=1e-9, rtol=0)
    torch.testing.assert_close(out.depth, depth, atol=1e-9, rtol=0)


@pytest.mark.parametrize("max_chunk_elements, block_size", [(1 << 19, 256), (3000, 7), (1, 1)])
def test_gradients_match_brute_force_with_early_termination(max_chunk_elements, block_size):
    scene = random_scene(300, 40, 40, seed=3, channels=4)
    scene["opacities"] = 0.5 + 0.5 * scene["opacities"]
    scene["opacities"][::5] = 1.0
    scene["scales"] = scene["scales"] * 1.5
    projection = project(scene)
    leaves = [
        tensor.detach().clone().requires_grad_(True)
        for tensor in (projection.means2d, projection.conics, scene["opacities"], scene["colors"])
    ]
    counts = {}
    rgb, alpha, _ = brute_force_render(
        replace(projection, means2d=leaves[0], conics=leaves[1]), leaves[2], leaves[3], 40, 40, counts=counts
    )
    assert counts["terminated"] > 1000 and counts["clamped"] > 10  # of 1600 pixels
    weights = torch.rand(40, 40, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.autograd.grad((torch.cat([rgb, alpha], -1) * weights).sum(), leaves)
    bins = bin_gaussians(projection.means2d, projection.radii, projection.depths, 40, 40)
    rgb, alpha = rasterize_to_pixels_torch(
        *leaves, bins, 40, 40, max_chunk_elements=max_chunk_elements, block_size=block_size
    )
    actual = torch.autograd.grad((torch.cat([rgb, alpha], -1) * weights).sum(), leaves)
    for name, got, want in zip(["means2d", "conics", "opacities", "features"], actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9, msg=name)


def test_float32_matches_float64_brute_force():
    scene64 = random_scene(200, 64, 48, seed=5)
    scene32 = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in scene64.items()}
    out = render(scene32)
    rgb, alpha, depth = brute_force_render(project(scene64), scene64["opacities"], scene64["colors"], 64, 48)
    assert out.rgb.dtype == torch.float32
    torch.testing.assert_close(out.rgb.double(), rgb, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.alpha.double(), alpha, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.depth.double(), depth, atol=1e-3, rtol=0)


@pytest.mark.parametrize("max_chunk_elements, block_size", [(1, 1), (3000, 5), (1 << 16, 64)])
def test_chunking_does_not_change_the_image(max_chunk_elements, block_size):
    scene = random_scene(150, 50, 40, seed=6)
    projection = project(scene)
    bins = bin_gaussians(projection.means2d, projection.radii, projection.depths, 50, 40)
    args = (projection.means2d, projection.conics, scene["opacities"], scene["colors"], bins, 50, 40)
    reference = rasterize_to_pixels_torch(*args)
    chunked = rasterize_to_pixels_torch(*args, max_chunk_elements=max_chunk_elements, block_size=block_size)
    for expected, actual in zip(reference, chunked, strict=True):
        torch.testing.assert_close(actual, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("background_shape", [(3,), (12, 10, 3)])
def test_background_is_composited_under_the_gaussians(background_shape):
    scene = random_scene(20, 10, 12, seed=7)
    background = torch.rand(background_shape, dtype=torch.float64)
    plain = render(scene)
    over = render(scene, background=background)
    torch.testing.assert_close(over.rgb, plain.rgb + (1 - plain.alpha) * background)
    torch.testing.assert_close(
        render({**scene, "opacities": scene["opacities"] * 0}, background=background).rgb,
        background.expand(12, 10, 3),
    )


def tiny_scene(num: int, seed: int):
    """Gaussians well inside an 8x8 view, opacities in [0.3, 0.6]: far from the 0.99 clamp and termination."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=torch.float64)
    K = intrinsics(8.0, 4.0, 4.0, dtype=torch.float64)
    z = 2 + rand(num)
    return dict(
        means=torch.stack([(rand(num) - 0.5) * 0.5 * z, (rand(num) - 0.5) * 0.5 * z, z], dim=-1),
        quats=torch.randn(num, 4, generator=gen, dtype=torch.float64),
        scales=(0.15 + 0.2 * rand(num, 3)) * z[:, None] / 8.0 * 4,
        opacities=0.3 + 0.3 * rand(num),
        colors=rand(num, 3),
        viewmat=torch.eye(4, dtype=torch.float64),
        K=K,
        width=8,
        height=8,
    )


def assert_away_from_thresholds(scene):
    """No (pixel, Gaussian) alpha near 1/255 or 0.99, and no pixel near termination, so gradients exist."""
    projection = project(scene)
    assert bool((projection.radii > 0).all())
    height, width = scene["height"], scene["width"]
    rows = torch.arange(height, dtype=torch.float64)[:, None, None] + 0.5
    cols = torch.arange(width, dtype=torch.float64)[None, :, None] + 0.5
    dx, dy = cols - projection.means2d[:, 0], rows - projection.means2d[:, 1]
    a, b, c = projection.conics.unbind(-1)
    raw_alpha = scene["opacities"] * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))
    assert bool(((raw_alpha - ALPHA_MIN).abs() > 0.005 * ALPHA_MIN).all()) and raw_alpha.max() < 0.9
    assert (1 - raw_alpha).prod(-1).min() > 10 * TRANSMITTANCE_MIN


@pytest.mark.parametrize("num, seed", [(2, 0), (3, 1), (5, 2)])
def test_gradcheck(num, seed):
    scene = tiny_scene(num, seed)
    names = ["means", "quats", "scales", "opacities", "colors"]
    inputs = [scene[name].clone().requires_grad_(True) for name in names]
    background = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def fn(means, quats, scales, opacities, colors, background):
        out = rasterize(
            means, quats, scales, opacities, colors, scene["viewmat"], scene["K"], 8, 8, background=background
        )
        return out.rgb, out.alpha, out.depth

    assert_away_from_thresholds(scene)
    assert torch.autograd.gradcheck(fn, (*inputs, background), eps=1e-6, atol=1e-6)


def test_gradcheck_across_tiles():
    scene = tiny_scene(4, seed=5)
    scene["K"] = intrinsics(8.0, 16.0, 16.0, dtype=torch.float64)  # Gaussians around the corner of 4 tiles
    scene["width"], scene["height"] = 24, 20
    assert_away_from_thresholds(scene)
    means = scene["means"].clone().requires_grad_(True)
    scales = scene["scales"].clone().requires_grad_(True)

    weights = torch.rand(20, 24, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(means, scales):
        out = render({**scene, "means": means, "scales": scales})
        return (out.rgb * weights).sum((0, 1)), (out.depth * weights).sum()  # random projections of the image

    assert torch.autograd.gradcheck(fn, (means, scales), eps=1e-6, atol=1e-6)


def test_means2d_gradient_is_the_screen_space_gradient():
    scene = random_scene(40, 32, 32, seed=8)
    scene["means"].requires_grad_(True)
    out = render(scene)
    out.means2d.retain_grad()
    out.rgb.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.abs().sum() > 0

    projection = project({**scene, "means": scene["means"].detach()})
    means2d = projection.means2d.clone().requires_grad_(True)
    bins = bin_gaussians(means2d, projection.radii, projection.depths, 32, 32)
    rgb, _ = rasterize_to_pixels_torch(
        means2d, projection.conics, scene["opacities"], scene["colors"], bins, 32, 32
    )
    rgb.sum().backward()
    torch.testing.assert_close(out.means2d.grad, means2d.grad)


def test_projection_of_a_sphere_facing_the_camera():
    scales = torch.tensor([[0.05, 0.05, 0.05]], dtype=torch.float64)
    projection = project_gaussians(
        torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64),
        torch.tensor([[2.0, 0.0, 0.0, 0.0]], dtype=torch.float64),
        scales,
        torch.eye(4, dtype=torch.float64),
        intrinsics(100.0, 32.0, 24.0, dtype=torch.float64),
        64,
        48,
    )
    variance = (100.0 * 0.05 / 2.0) ** 2 + 0.3  # (f s / z)^2 plus the eps2d low-pass
    torch.testing.assert_close(projection.means2d, torch.tensor([[32.0, 24.0]], dtype=torch.float64))
    torch.testing.assert_close(projection.cov2d, variance * torch.eye(2, dtype=torch.float64)[None])
    torch.testing.assert_close(
        projection.conics, torch.tensor([[1 / variance, 0.0, 1 / variance]], dtype=torch.float64)
    )
    torch.testing.assert_close(projection.depths, torch.tensor([2.0], dtype=torch.float64))
    # gsplat's radius: 3 sqrt(largest eigenvalue), the eigenvalue gap floored at sqrt(0.01).
    assert projection.radii.tolist() == [math.ceil(3 * math.sqrt(variance + 0.1))] == [8]


def test_projection_of_a_rotated_ellipsoid_seen_from_a_moved_camera():
    """A Gaussian stretched along world x, rotated 90 degrees about z, seen by a camera 2 units back."""
    quarter_turn_z = torch.tensor(
        [[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]], dtype=torch.float64
    )
    viewmat = look_at(
        torch.tensor([0.0, 0.0, -2.0], dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
        torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64),
    )
    torch.testing.assert_close(
        viewmat,
        torch.eye(4, dtype=torch.float64)
        + torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2.0], [0, 0, 0, 0]], dtype=torch.float64),
    )
    projection = project_gaussians(
        torch.zeros(1, 3, dtype=torch.float64),
        quarter_turn_z,
        torch.tensor([[0.1, 0.02, 0.02]], dtype=torch.float64),
        viewmat,
        intrinsics(50.0, 20.0, 20.0, dtype=torch.float64),
        40,
        40,
    )
    # The long axis now points along y: variances (f s / z)^2 = (50 * 0.02 / 2)^2 and (50 * 0.1 / 2)^2.
    expected = torch.tensor([[[0.25 + 0.3, 0.0], [0.0, 6.25 + 0.3]]], dtype=torch.float64)
    torch.testing.assert_close(projection.cov2d, expected)


def test_projection_matches_the_jacobian_of_the_pinhole_map():
    """Inside the view, cov2d = J W Sigma W^T J^T + 0.3 I with J from autograd and Sigma from scipy."""
    scene = random_scene(50, 64, 48, seed=9)
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = torch.tensor(Rotation.from_rotvec([0.1, -0.2, 0.05]).as_matrix())
    viewmat[:3, 3] = torch.tensor([0.015, -0.03, 0.06], dtype=torch.float64)
    projection = project_gaussians(
        scene["means"], scene["quats"], scene["scales"], viewmat, scene["K"], 64, 48
    )

    K = scene["K"]
    pinhole = lambda p: torch.stack([K[0, 0] * p[0] / p[2] + K[0, 2], K[1, 1] * p[1] / p[2] + K[1, 2]])
    quats_xyzw = scene["quats"][:, [1, 2, 3, 0]].numpy()
    rotations = torch.tensor(Rotation.from_quat(quats_xyzw).as_matrix())
    checked = 0
    for n in range(50):
        camera_point = viewmat[:3, :3] @ scene["means"][n] + viewmat[:3, 3]
        mean2d = pinhole(camera_point)
        inside = (0 <= mean2d[0] < 64) and (0 <= mean2d[1] < 48)
        if not inside or projection.radii[n] == 0:
            continue
        jacobian = torch.autograd.functional.jacobian(pinhole, camera_point)
        covariance = rotations[n] @ torch.diag(scene["scales"][n] ** 2) @ rotations[n].T
        camera_covariance = viewmat[:3, :3] @ covariance @ viewmat[:3, :3].T
        expected = jacobian @ camera_covariance @ jacobian.T + 0.3 * torch.eye(2, dtype=torch.float64)
        torch.testing.assert_close(projection.cov2d[n], expected)
        torch.testing.assert_close(projection.means2d[n], mean2d)
        inverse = torch.linalg.inv(expected)
        torch.testing.assert_close(
            projection.conics[n], torch.stack([inverse[0, 0], inverse[0, 1], inverse[1, 1]])
        )
        checked += 1
    assert checked >= 20


def test_projection_clamps_the_jacobian_outside_the_view():
    """gsplat clamps x/z to the view plus 30 % of the half field of view before forming J."""
    K = intrinsics(10.0, 5.0, 5.0, dtype=torch.float64)
    z, x = 1.0, 3.0  # x/z = 3, beyond the limit 5/10 + 0.3 * 0.5 = 0.65
    projection = project_gaussians(
        torch.tensor([[x, 0.0, z]], dtype=torch.float64),
        torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64),
        torch.tensor([[1.0, 1e-3, 1e-3]], dtype=torch.float64),
        torch.eye(4, dtype=torch.float64),
        K,
        10,
        10,
    )
    jacobian = torch.tensor([[10.0 / z, 0.0, -10.0 * 0.65 / z], [0.0, 10.0 / z, 0.0]], dtype=torch.float64)
    covariance = torch.diag(torch.tensor([1.0, 1e-6, 1e-6], dtype=torch.float64))
    expected = jacobian @ covariance @ jacobian.T + 0.3 * torch.eye(2, dtype=torch.float64)
    assert projection.radii.item() > 0  # 25 pixels right of the image, but 10 pixels wide (1 sigma)
    torch.testing.assert_close(projection.cov2d[0], expected)


def test_culled_gaussians_contribute_nothing():
    scene = random_scene(30, 32, 32, seed=10)
    extra = {
        "means": torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 0.005], [50.0, 0.0, 1.0], [0.0, 0.0, 2e10]]),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(4, 4),
        "scales": torch.full((4, 3), 0.5),
        "opacities": torch.full((4,), 0.9),
        "colors": torch.ones(4, 3),
    }  # behind the camera, in front of the near plane, far outside the image, beyond the far plane
    with_extra = {**scene, **{k: torch.cat([scene[k], v.double()]) for k, v in extra.items()}}
    plain, crowded = render(scene), render(with_extra)
    assert crowded.radii[-4:].tolist() == [0, 0, 0, 0]
    assert crowded.radii.shape == (34,) and crowded.means2d.shape == (34, 2)
    torch.testing.assert_close(crowded.rgb, plain.rgb, atol=0, rtol=0)
    torch.testing.assert_close(crowded.depth, plain.depth, atol=0, rtol=0)


def test_gaussians_below_the_alpha_threshold_draw_nothing_but_keep_their_radius():
    scene = random_scene(10, 32, 32, seed=11)
    scene["opacities"][:5] = 0.5 / 255
    out = render(scene)
    reference = render(
        {**scene, "opacities": torch.cat([torch.zeros(5, dtype=torch.float64), scene["opacities"][5:]])}
    )
    torch.testing.assert_close(out.rgb, reference.rgb, atol=0, rtol=0)
    assert bool((out.radii[:5] > 0).all())


def test_empty_scene_renders_the_background():
    empty = torch.zeros(0, 3)
    K = intrinsics(10.0, 5.0, 5.0)
    background = torch.tensor([0.1, 0.2, 0.3])
    out = rasterize(
        empty, torch.zeros(0, 4), empty, torch.zeros(0), empty, torch.eye(4), K, 10, 7, background=background
    )
    torch.testing.assert_close(out.rgb, background.expand(7, 10, 3))
    assert out.alpha.abs().sum() == 0 and out.depth.abs().sum() == 0 and out.radii.shape == (0,)


def test_unknown_backend_is_a_user_error():
    scene = random_scene(3, 16, 16, seed=12)
    with pytest.raises(AvatarError, match="torch"):
        render(scene, backend="vulkan")


def test_mismatched_shapes_are_rejected():
    scene = random_scene(3, 16, 16, seed=12)
    with pytest.raises(ValueError, match="quats"):
        render({**scene, "quats": scene["quats"][:2]})
    with pytest.raises(ValueError, match="background"):
        render(scene, background=torch.zeros(4, dtype=torch.float64))


def test_tile_bins_are_sorted_by_tile_then_depth():
    scene = random_scene(200, 70, 50, seed=13)
    projection = project(scene)
    bins = bin_gaussians(projection.means2d, projection.radii, projection.depths, 70, 50)
    assert (bins.tiles_x, bins.tiles_y) == (5, 4)
    assert bins.offsets[-1] == bins.gaussian_ids.numel() == bins.tile_ids.numel()
    assert bool((bins.tile_ids[1:] >= bins.tile_ids[:-1]).all())
    same_tile = bins.tile_ids[1:] == bins.tile_ids[:-1]
    depths = projection.depths[bins.gaussian_ids]
    assert bool((depths[1:][same_tile] >= depths[:-1][same_tile]).all())
    for tile in range(20):
        listed = set(bins.gaussian_ids[bins.offsets[tile] : bins.offsets[tile + 1]].tolist())
        col, row = tile % 5, tile // 5
        r = projection.radii.double()
        x, y = projection.means2d.unbind(-1)
        overlaps = (
            (r > 0)
            & (x - r < 16 * col + 16)
            & (x + r > 16 * col)
            & (y - r < 16 * row + 16)
            & (y + r > 16 * row)
        )
        assert listed == set(torch.nonzero(overlaps).flatten().tolist())


def test_alpha_extents_drop_only_tiles_a_gaussian_does_not_reach():
    scene = random_scene(200, 70, 50, seed=13)
    projection = project(scene)
    full = bin_gaussians(projection.means2d, projection.radii, projection.depths, 70, 50)
    extents = alpha_half_extents(projection.cov2d, scene["opacities"], ALPHA_MIN)
    pruned = bin_gaussians(
        projection.means2d, projection.radii, projection.depths, 70, 50, half_extents=extents
    )
    full_pairs = set(zip(full.tile_ids.tolist(), full.gaussian_ids.tolist(), strict=True))
    pruned_pairs = set(zip(pruned.tile_ids.tolist(), pruned.gaussian_ids.tolist(), strict=True))
    dropped = full_pairs - pruned_pairs
    assert pruned_pairs < full_pairs and len(dropped) > 50
    offsets = torch.arange(16, dtype=torch.float64) + 0.5
    for tile, n in dropped:
        cols, rows = 16 * (tile % 5) + offsets[None, :], 16 * (tile // 5) + offsets[:, None]
        dx, dy = cols - projection.means2d[n, 0], rows - projection.means2d[n, 1]
        a, b, c = projection.conics[n]
        alpha = scene["opacities"][n] * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))
        assert alpha.max() < ALPHA_MIN


def test_many_tiny_gaussians_render_in_bounded_memory():
    """200k Gaussians over 256x256 (pixels x all Gaussians would be 52 GB in float32) in a fresh process.

    The peak must stay below half of one float32 value per (pixel, overlapping Gaussian) pair, i.e. the
    pairs are never all held at once.
    """
    script = textwrap.dedent(
        """
        import resource, sys, torch
        sys.path.insert(0, sys.argv[1])
        from avatar.render import ALPHA_MIN, alpha_half_extents, bin_gaussians, intrinsics, project_gaussians
        from avatar.render import rasterize
        gen = torch.Generator().manual_seed(0)
        n = 200_000
        z = 2 + torch.rand(n, generator=gen)
        pixel = torch.rand(n, 2, generator=gen) * 256
        means = torch.stack([(pixel[:, 0] - 128) * z / 256, (pixel[:, 1] - 128) * z / 256, z], dim=-1)
        scales = 0.5 * z[:, None] / 256 * torch.rand(n, 3, generator=gen)
        quats, opacities = torch.randn(n, 4, generator=gen), torch.rand(n, generator=gen)
        colors = torch.rand(n, 3, generator=gen)
        K = intrinsics(256.0, 128.0, 128.0)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            out = rasterize(means, quats, scales, opacities, colors, torch.eye(4), K, 256, 256)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        p = project_gaussians(means, quats, scales, torch.eye(4), K, 256, 256)
        extents = alpha_half_extents(p.cov2d, opacities, ALPHA_MIN)
        radii = p.radii * (opacities >= ALPHA_MIN)
        bins = bin_gaussians(p.means2d, radii, p.depths, 256, 256, half_extents=extents)
        print((peak - base) * 1024, bins.gaussian_ids.numel() * 256, float(out.alpha.mean()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True
    )
    extra_bytes, pairs, mean_alpha = map(float, result.stdout.split())
    assert mean_alpha > 0.5 and pairs > 5e7
    assert extra_bytes < 0.5 * 4 * pairs, (extra_bytes, pairs)


def test_render_is_deterministic():
    scene = random_scene(100, 40, 30, seed=14, dtype=torch.float32)
    first, second = render(scene), render(scene)
    assert np.array_equal(first.rgb.numpy(), second.rgb.numpy())
