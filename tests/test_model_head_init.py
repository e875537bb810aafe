from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar.core.errors import AvatarError
from avatar.model.head_init import (
    INITIAL_COLOR,
    INITIAL_OPACITY,
    _part_counts,
    colors_from_frame,
    init_head_gaussians,
)

# A synthetic face with the proportions of a capture's canonical landmarks (head frame, metres): an elliptic
# footprint 0.136 m wide from the hairline (y = -0.045) to the chin (y = 0.115), a curved surface from the
# cheek sides (z = 0.065) to the forehead (z ~ -0.015), and a nose reaching z ~ -0.03.
FACE_HALF_WIDTH, FACE_HALF_HEIGHT, FACE_CENTRE_Y = 0.068, 0.08, 0.035


def face_surface_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r2 = np.clip((x / FACE_HALF_WIDTH) ** 2 + ((y - FACE_CENTRE_Y) / FACE_HALF_HEIGHT) ** 2, 0, 1)
    nose = 0.015 * np.exp(-(x**2 + (y - 0.035) ** 2) / 0.02**2)
    return 0.065 - 0.08 * np.sqrt(1 - r2) - nose


def synthetic_landmarks(count: int = 478, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(0, 1, count))
    angle = rng.uniform(0, 2 * np.pi, count)
    x = FACE_HALF_WIDTH * radius * np.cos(angle)
    y = FACE_CENTRE_Y + FACE_HALF_HEIGHT * radius * np.sin(angle)
    return np.stack([x, y, face_surface_z(x, y)], axis=1)


@pytest.fixture(scope="module")
def landmarks() -> np.ndarray:
    return synthetic_landmarks()


@pytest.fixture(scope="module")
def head(landmarks):
    return init_head_gaussians(landmarks, 6000, seed=3)


@pytest.mark.parametrize("count", [1, 37, 478, 2500])
def test_requested_count(landmarks, count):
    gaussians = init_head_gaussians(landmarks, count, seed=0)
    assert gaussians.num == count
    assert all(parameter.shape[0] == count for parameter in gaussians.parameters())
    assert bool(torch.isfinite(gaussians.means).all())


def test_deterministic_per_seed(landmarks):
    first = init_head_gaussians(landmarks, 1500, seed=7)
    again = init_head_gaussians(landmarks, 1500, seed=7)
    other = init_head_gaussians(landmarks, 1500, seed=8)
    for a, b in zip(first.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(first.means, other.means)


def test_covers_the_landmarks_and_the_rest_of_the_head(head, landmarks):
    means = head.means.detach().numpy()
    low, high = landmarks.min(0), landmarks.max(0)
    assert (means.min(0) <= low).all() and (means.max(0) >= high).all()
    # every landmark is itself a Gaussian when there are enough of them
    distances = np.linalg.norm(landmarks[:, None] - means[None, : len(landmarks)], axis=-1).min(1)
    assert distances.max() < 1e-6
    # the face region is filled: every cell of a 1 cm grid over the face footprint has a Gaussian within 1 cm
    xs, ys = np.meshgrid(np.linspace(-0.05, 0.05, 11), np.linspace(-0.02, 0.09, 12))
    xs, ys = xs.ravel(), ys.ravel()
    on_face = (xs / FACE_HALF_WIDTH) ** 2 + ((ys - FACE_CENTRE_Y) / FACE_HALF_HEIGHT) ** 2 < 0.9
    cells = np.stack([xs, ys, face_surface_z(xs, ys)], axis=1)[on_face]
    assert np.linalg.norm(cells[:, None] - means[None], axis=-1).min(1).max() < 0.01
    # the head extends behind the face (skull and hair ~0.19 m deep), above the hairline and below the chin
    depth = means[:, 2].max() - np.quantile(landmarks[:, 2], 0.15)
    assert 0.16 < depth < 0.25
    assert means[:, 1].min() < low[1] - 0.04  # hair above the forehead
    assert means[:, 1].max() > high[1] + 0.03  # neck below the chin
    assert (means[:, 0].min() < low[0] - 0.01) and (means[:, 0].max() > high[0] + 0.01)  # ears
    behind = means[means[:, 2] > high[2] + 0.05]
    assert len(behind) > 0.1 * len(means)  # a real share of the budget covers the back of the head


def test_generic_samples_do_not_float_in_front_of_the_face(head):
    counts = _part_counts(head.num)
    generic = head.means.detach().numpy()[counts["face"] :]
    x, y, z = generic.T
    inside = (x / FACE_HALF_WIDTH) ** 2 + ((y - FACE_CENTRE_Y) / FACE_HALF_HEIGHT) ** 2 < 0.75
    # the face's own triangulation is within a few mm of the analytic surface
    assert (z[inside] > face_surface_z(x[inside], y[inside]) + 0.002).all()


def test_initial_scales_opacity_and_colour(head):
    scales = torch.exp(head.log_scales.detach())
    assert torch.equal(scales[:, 0], scales[:, 1]) and torch.equal(scales[:, 0], scales[:, 2])
    assert float(scales.min()) > 0 and 0.0005 < float(scales.median()) < 0.01
    activated = head.activated()
    torch.testing.assert_close(activated.opacities, torch.full((head.num,), INITIAL_OPACITY))
    torch.testing.assert_close(activated.colors, torch.full((head.num, 3), INITIAL_COLOR))
    torch.testing.assert_close(activated.quats, torch.tensor([1.0, 0, 0, 0]).expand(head.num, 4))


def test_bad_landmarks_raise(landmarks):
    with pytest.raises(AvatarError):
        init_head_gaussians(landmarks[:, :2], 100)
    broken = landmarks.copy()
    broken[3, 1] = np.nan
    with pytest.raises(AvatarError):
        init_head_gaussians(broken, 100)


def rotation_about_y(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_colors_from_frame_reads_the_projected_pixels():
    height, width = 48, 64
    K = np.array([[100.0, 0, width / 2], [0, 100.0, height / 2], [0, 0, 1]])
    R, t = rotation_about_y(10.0), np.array([0.01, -0.02, 0.6])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    # head points whose projections are the centres of chosen pixels: back-project (col + 0.5, row + 0.5)
    pixels = np.array([[3, 5], [40, 20], [63, 47], [0, 0], [31, 24]])  # (col, row)
    depth = np.array([0.55, 0.6, 0.58, 0.62, 0.6])
    rays = np.linalg.inv(K) @ np.concatenate([pixels + 0.5, np.ones((5, 1))], axis=1).T
    head_points = (R.T @ (rays * depth - t[:, None])).T
    colors = colors_from_frame(torch.tensor(head_points, dtype=torch.float32), R, t, K, image)
    expected = image[pixels[:, 1], pixels[:, 0]] / 255.0
    torch.testing.assert_close(colors, torch.tensor(expected, dtype=torch.float32), atol=2e-3, rtol=0)

    # half-way between two horizontally adjacent pixel centres: their mean
    between = np.linalg.inv(K) @ np.array([10.0 + 1.0, 7.5, 1.0])
    point = R.T @ (between * 0.6 - t)
    color = colors_from_frame(torch.tensor(point[None], dtype=torch.float32), R, t, torch.tensor(K), image)
    torch.testing.assert_close(
        color[0], torch.tensor((image[7, 10] / 2 + image[7, 11] / 2) / 255.0).float(), atol=2e-3, rtol=0
    )


def test_colors_from_frame_keeps_the_default_for_hidden_or_outside_points():
    K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
    image = np.full((64, 64, 3), 200, dtype=np.uint8)
    R, t = np.eye(3), np.array([0.0, 0.0, 0.6])  # frontal camera 0.6 m in front of the head
    points = torch.tensor(
        [
            [0.0, 0.0, -0.03],  # nose: visible
            [0.0, 0.0, 0.15],  # back of the head: behind the pivot plane
            [0.5, 0.0, 0.0],  # projects outside the image
            [0.0, 0.0, -0.7],  # behind the camera
        ]
    )
    colors = colors_from_frame(points, R, t, K, image, default=0.25)
    torch.testing.assert_close(colors[0], torch.full((3,), 200 / 255))
    torch.testing.assert_close(colors[1:], torch.full((3, 3), 0.25))
    # seen from behind, the back of the head is the visible side
    back_view = colors_from_frame(points, rotation_about_y(180.0), t, K, image, default=0.25)
    torch.testing.assert_close(back_view[1], torch.full((3,), 200 / 255))
    torch.testing.assert_close(back_view[0], torch.full((3,), 0.25))
