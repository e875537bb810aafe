"""Initial torso Gaussians, from one frame's torso mask: its pixels lifted onto a rounded chest behind the neck.

A phone video sees the torso from one side only, so its depth is a guess the fit refines: an upright elliptic
cylinder whose front is `NECK_BEHIND_HEAD_M` behind the head's origin, as wide as the torso mask, and
`DEPTH_PER_WIDTH` as deep as it is wide (a chest is flatter than round), so that a turned camera sees the
shoulders recede. Each of `num` Gaussians sits on the ray of a pixel drawn from the mask, takes the pixel's
colour and a size that makes neighbours overlap (`SPACING_SCALE` of their spacing on the mask). Its `neck_weights` (`avatar.model.torso`) fall smoothly from 1
at the chin to 0 `NECK_LENGTH_M` below it.
"""

from __future__ import annotations

import numpy as np
import torch

from avatar.core.errors import AvatarError
from avatar.model.gaussians import CanonicalGaussians, inverse_sigmoid
from avatar.model.torso import TorsoModel

NECK_BEHIND_HEAD_M = 0.03
DEPTH_PER_WIDTH = 0.6
NECK_LENGTH_M = 0.08
INITIAL_OPACITY = 0.7
SPACING_SCALE = (
    0.6  # a Gaussian's standard deviation per spacing of the Gaussians, so that neighbours overlap
)
MIN_PIXELS = 50


def init_torso(
    image: np.ndarray,  # [S, S, 3] uint8 RGB: the reference frame
    torso_mask: np.ndarray,  # [S, S] uint8: its torso
    intrinsics: np.ndarray,  # [3, 3] the crop's camera
    avatar_pose: np.ndarray,  # [4, 4] avatar frame -> camera
    chin: np.ndarray,  # [3] the chin, avatar frame
    num: int,
    *,
    seed: int = 0,
) -> TorsoModel:
    """A `TorsoModel` of `num` Gaussians lifted from the mask's pixels (module docstring); AvatarError when the
    mask shows (almost) no torso."""
    rows, cols = np.nonzero(torso_mask > 127)
    if len(rows) < MIN_PIXELS:
        raise AvatarError(
            f"the capture's torso mask has {len(rows)} pixels: too little torso to fit",
            fix="Capture a video that shows the shoulders, or fit without the torso (--no-torso)",
        )
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(rows), size=num)
    u = cols[pick] + rng.uniform(0, 1, num)
    v = rows[pick] + rng.uniform(0, 1, num)
    rays = np.stack([u, v, np.ones(num)], axis=-1) @ np.linalg.inv(intrinsics).T  # z = 1
    head = avatar_pose[:3, 3]  # the avatar frame's origin in the camera
    front = head[2] + NECK_BEHIND_HEAD_M
    focal = float(intrinsics[0, 0])
    half_width = 0.5 * (cols.max() - cols.min() + 1) * front / focal
    depth = np.full(num, front)
    for _ in range(4):  # the ray meets the cylinder where its depth agrees with the cylinder's at its x
        across = np.clip((rays[:, 0] * depth - head[0]) / half_width, -1.0, 1.0)
        depth = front + DEPTH_PER_WIDTH * half_width * (1 - np.sqrt(1 - across**2))
    points = rays * depth[:, None]
    inverse = np.linalg.inv(avatar_pose)
    means = points @ inverse[:3, :3].T + inverse[:3, 3]
    colours = image[rows[pick], cols[pick]].astype(np.float32) / 255
    spacing_px = np.sqrt(len(rows) / num)  # between neighbouring Gaussians, in pixels
    footprint = depth / focal * max(1.0, spacing_px) * SPACING_SCALE
    neck = np.clip((chin[1] + NECK_LENGTH_M - means[:, 1]) / NECK_LENGTH_M, 0.0, 1.0)
    neck = neck * neck * (3 - 2 * neck)  # smoothstep
    quats = np.zeros((num, 4))
    quats[:, 0] = 1
    gaussians = CanonicalGaussians(
        means=torch.from_numpy(means).float(),
        quats=torch.from_numpy(quats).float(),
        log_scales=torch.from_numpy(np.log(np.repeat(footprint[:, None], 3, 1))).float(),
        opacity_logits=inverse_sigmoid(torch.full((num,), INITIAL_OPACITY)),
        color_logits=inverse_sigmoid(torch.from_numpy(colours)),
    )
    return TorsoModel(gaussians, torch.from_numpy(neck).float(), torch.from_numpy(avatar_pose).float())
