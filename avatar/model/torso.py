"""The Gaussian torso: neck, shoulders and upper chest in the avatar frame, moved a little by the head's pose.

The torso's Gaussians live in the avatar frame (`avatar.data.avatar_frame`: the head frame at the capture's mean
head pose), which does not follow the head. A frame's head pose in that frame, H = [[R_h, t_h], [0, 1]], drives
them two ways:

- the body's small motion: a small network from the head's rotation and position to one rigid motion of the
  whole torso (a rotation of at most ~6 degrees and a shift of at most ~2 cm; zero-initialised, so an untrained
  torso stands still), as the anchors' torso branches follow the head pose, not the audio;
- the neck: each Gaussian's `neck_weights` w in [0, 1] (1 at the chin, falling to 0 at the shoulders) blends
  the head's motion into its own, X -> w (R_h X + t_h) + (1 - w) (R_b X + t_b), its rotation the same blend
  of the two rotation vectors; so the neck bends with the head and the shoulders stay.

`bust_gaussians` joins the head's Gaussians (moved into the avatar frame) and the torso's in one set, which is
rasterized in one pass: the chin and the neck occlude each other by depth.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avatar.model.gaussians import CanonicalGaussians, GaussianSet
from avatar.model.rigid import (
    concatenate,
    quat_multiply,
    quat_to_rotmat,
    rotmat_to_rotvec,
    rotvec_to_quat,
    transform_gaussians,
)

MAX_BODY_ROTATION = 0.1  # radians, per unit output of the body-motion network
MAX_BODY_SHIFT = 0.02  # metres, per unit output
POSE_FEATURES = 6  # the head's rotation vector and its position, both in the avatar frame


class TorsoModel(nn.Module):
    """Canonical torso Gaussians (avatar frame) and how the head's pose moves them (module docstring).

    Args:
        gaussians: N canonical Gaussians in the avatar frame
        neck_weights: [N] in [0, 1], how far each follows the head
        avatar_pose: [4, 4] avatar frame -> the capture's camera
        hidden: width of the body-motion network
    """

    def __init__(
        self, gaussians: CanonicalGaussians, neck_weights: Tensor, avatar_pose: Tensor, *, hidden: int = 32
    ):
        super().__init__()
        if neck_weights.shape != (gaussians.num,):
            raise ValueError(f"neck_weights must be [{gaussians.num}], got {list(neck_weights.shape)}")
        device = gaussians.means.device
        self.gaussians = gaussians
        self.register_buffer("neck_weights", neck_weights.float().to(device))
        self.register_buffer("avatar_pose", avatar_pose.float().to(device))
        self.body_motion = nn.Sequential(
            nn.Linear(POSE_FEATURES, hidden), nn.SiLU(), nn.Linear(hidden, POSE_FEATURES)
        ).to(device)
        nn.init.zeros_(self.body_motion[-1].weight)
        nn.init.zeros_(self.body_motion[-1].bias)

    @staticmethod
    def empty(num: int, device: torch.device | str | None = None) -> TorsoModel:
        """A torso of `num` placeholder Gaussians, e.g. to load a state dict into."""
        return TorsoModel(CanonicalGaussians.empty(num, device), torch.zeros(num), torch.eye(4))

    def forward(self, head_pose: Tensor) -> GaussianSet:
        """[4, 4] the head's pose in the avatar frame (head -> avatar) -> the torso's Gaussians, avatar frame."""
        head_pose = head_pose.to(self.avatar_pose)
        head_rotvec = rotmat_to_rotvec(head_pose[:3, :3])
        pose = torch.cat([head_rotvec, head_pose[:3, 3] / MAX_BODY_SHIFT])
        motion = torch.tanh(self.body_motion(pose))
        body_rotvec, body_shift = motion[:3] * MAX_BODY_ROTATION, motion[3:] * MAX_BODY_SHIFT
        w = self.neck_weights[:, None]
        canonical = self.gaussians.activated()
        head_means = canonical.means @ head_pose[:3, :3].T + head_pose[:3, 3]
        body_means = canonical.means @ quat_to_rotmat(rotvec_to_quat(body_rotvec)).T + body_shift
        rotvecs = w * head_rotvec + (1 - w) * body_rotvec  # [N, 3]
        return GaussianSet(
            means=w * head_means + (1 - w) * body_means,
            quats=quat_multiply(rotvec_to_quat(rotvecs), canonical.quats),
            scales=canonical.scales,
            opacities=canonical.opacities,
            colors=canonical.colors,
        )


def bust_gaussians(head: GaussianSet, head_pose: Tensor, torso: GaussianSet) -> GaussianSet:
    """The head's Gaussians (head frame) moved by `head_pose` [4, 4] (head -> avatar frame), then the torso's
    (avatar frame): one set to rasterize in one pass."""
    return concatenate([transform_gaussians(head, head_pose[:3, :3], head_pose[:3, 3]), torso])
