"""The avatar frame: where a render's cameras are placed (camera paths, orbits, the viewer, PLY exports).

It is the head frame at the capture's mean head pose over the given frames: metres, OpenCV axes as the head's
(x to the image's right, y down, z away from the capture's camera for a frontal face), origin at the mean head
origin. The head moves in it as it moved in the capture, so a camera fixed in it sees the head sway; the
capture's camera is fixed in it, at `avatar_pose`'s inverse.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from avatar.data.dataset import Tracking


def avatar_pose(tracking: Tracking, frames: np.ndarray) -> np.ndarray:
    """[4, 4] avatar frame -> capture camera: the mean of the head poses of `frames` [F] (rotations averaged on
    the rotation group, translations arithmetically)."""
    frames = np.asarray(frames)
    if len(frames) == 0:
        raise ValueError("the avatar frame needs at least one tracked frame")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_matrix(tracking.rotations[frames]).mean().as_matrix()
    pose[:3, 3] = tracking.translations[frames].mean(axis=0)
    return pose


def head_in_avatar(tracking: Tracking, pose: np.ndarray) -> np.ndarray:
    """[N, 4, 4] head -> avatar frame of every frame, given `pose` (avatar frame -> capture camera)."""
    return np.linalg.inv(pose)[None] @ tracking.viewmats
