"""Scenes and comparisons shared by the CUDA kernel tests (emulated on the CPU, and on a GPU)."""

from __future__ import annotations

import torch

from avatar.render import look_at
from tests.test_rasterize_torch import random_scene


def float32_scene(num: int, width: int, height: int, seed: int, channels: int = 3, device=None) -> dict:
    """tests.test_rasterize_torch.random_scene in float32 on `device`."""
    scene = random_scene(num, width, height, seed, channels=channels)
    return {
        k: v.to(device=device, dtype=torch.float32).contiguous() if isinstance(v, torch.Tensor) else v
        for k, v in scene.items()
    }


def moved_camera(device=None) -> torch.Tensor:
    """A moved, rotated camera that still sees random_scene's Gaussians (every entry of viewmat matters)."""
    eye = torch.tensor([0.3, -0.2, -0.4], dtype=torch.float64)
    target = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    return look_at(eye, target, torch.tensor([0.1, -1.0, 0.0], dtype=torch.float64)).float().to(device)


def upper_triangle(cov2d: torch.Tensor) -> torch.Tensor:
    """(a, b, c) [N, 3] of symmetric 2x2 matrices [N, 2, 2]."""
    return torch.stack([cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]], -1).contiguous()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest error relative to the largest magnitude of the expected values."""
    scale = expected.detach().abs().max().clamp(min=1e-30)
    return float((actual.detach().double() - expected.detach().double()).abs().max() / scale)


def assert_rows_close(name, actual, expected, *, rtol, max_bad_fraction, atol_scale=None) -> None:
    """Most rows (Gaussians) within atol + rtol |expected|, atol = atol_scale (default rtol) * max |expected|.

    A few Gaussians next to a discrete decision (a pixel's termination, a radius rounded up) may differ.
    """
    actual = actual.detach().double().reshape(len(actual), -1)
    expected = expected.detach().double().reshape(len(expected), -1)
    atol = (atol_scale if atol_scale is not None else rtol) * float(expected.abs().max())
    bad = ((actual - expected).abs() > atol + rtol * expected.abs()).any(dim=1)
    allowed = max(2, int(max_bad_fraction * len(bad)))
    assert int(bad.sum()) <= allowed, f"{name}: {int(bad.sum())} of {len(bad)} rows differ"


def assert_images_close(name, actual, expected, *, atol, max_bad_fraction) -> None:
    """All but a few pixels within atol (scaled by the image's largest value when that exceeds 1).

    A pixel whose transmittance crosses 1e-4, or an alpha 1/255, within rounding composites one Gaussian
    more or less; those pixels may differ by more.
    """
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = max(1.0, float(expected.abs().max()))
    mismatch = ((actual - expected).abs() > atol * scale).flatten(0, -2).any(dim=-1)
    allowed = max(3, int(max_bad_fraction * len(mismatch)))
    assert int(mismatch.sum()) <= allowed, f"{name}: {int(mismatch.sum())} of {len(mismatch)} pixels differ"
