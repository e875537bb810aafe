"""Rotations of Gaussians: quaternions (w, x, y, z), rotation vectors and rigid transforms of a `GaussianSet`."""

from __future__ import annotations

import torch
from torch import Tensor

from avatar.model.gaussians import GaussianSet


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from quaternions [..., 4] (w, x, y, z), normalised here."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def rotvec_to_quat(rotvecs: Tensor) -> Tensor:
    """[..., 3] rotation vectors (axis times angle, radians) -> [..., 4] unit quaternions (w, x, y, z)."""
    angle = rotvecs.norm(dim=-1, keepdim=True)
    half = angle / 2
    # sin(a / 2) / a, by its series near 0 so that the gradient stays finite
    factor = torch.where(angle > 1e-6, torch.sin(half) / angle.clamp_min(1e-6), 0.5 - angle**2 / 48)
    return torch.cat([torch.cos(half), rotvecs * factor], dim=-1)


def rotmat_to_rotvec(rotations: Tensor) -> Tensor:
    """[..., 3, 3] rotation matrices -> [..., 3] rotation vectors (angles below pi)."""
    trace = rotations.diagonal(dim1=-2, dim2=-1).sum(-1)
    angle = torch.arccos(((trace - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7))
    axis = torch.stack(
        [
            rotations[..., 2, 1] - rotations[..., 1, 2],
            rotations[..., 0, 2] - rotations[..., 2, 0],
            rotations[..., 1, 0] - rotations[..., 0, 1],
        ],
        dim=-1,
    )
    factor = torch.where(angle > 1e-6, angle / (2 * torch.sin(angle)).clamp_min(1e-12), 0.5 + angle**2 / 12)
    return axis * factor[..., None]


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """[..., 4] x [..., 4] -> [..., 4] the Hamilton product a b: the rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def transform_gaussians(gaussians: GaussianSet, rotations: Tensor, translations: Tensor) -> GaussianSet:
    """The Gaussians moved rigidly: `rotations` [3, 3] or one per Gaussian [N, 3, 3], `translations` [3] or
    [N, 3]; X -> R X + t, each Gaussian's orientation turned by R."""
    rotations = rotations.to(gaussians.means)
    translations = translations.to(gaussians.means)
    means = torch.einsum("...ij,...j->...i", rotations, gaussians.means) + translations
    turn = rotvec_to_quat(rotmat_to_rotvec(rotations))
    quats = quat_multiply(turn.expand_as(gaussians.quats), gaussians.quats)
    return GaussianSet(means, quats, gaussians.scales, gaussians.opacities, gaussians.colors)


def concatenate(sets: list[GaussianSet]) -> GaussianSet:
    """One set of all the sets' Gaussians, in order (e.g. head and torso, rasterized in one pass)."""
    return GaussianSet(
        *(
            torch.cat([getattr(s, name) for s in sets])
            for name in ("means", "quats", "scales", "opacities", "colors")
        )
    )
