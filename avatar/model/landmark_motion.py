"""Mouth, jaw and eyelid motion: tracked from the landmarks, predicted from audio (mouth) or from the eye
openness (lids), carried to the Gaussians around them.

Photometric losses on a low-resolution head barely pull the lips apart, and a network that must discover lip
motion from them alone learns too little from a few minutes of video. So the fit also learns the motion
itself: the deformation field predicts, from the audio token, how each mouth and jaw landmark moves
(`DeformationField.mouth_motion`), supervised by the tracked motion, and `skin_offsets` moves the Gaussians
around those landmarks with them.

Tracked motion: each landmark's non-rigid displacement is the gap between where the face mesh saw it and
where the rigid canonical face projects it, lifted to the head frame at the landmark's depth (in the image
plane only: the face mesh's own depth is too noisy),

    displacement = R^T [(observed - projected) * depth / focal, 0]

minus its moving average over `drift_frames` (`mouth_motion_targets`, 10 s at 25 fps): what remains is
articulation, not the slow drift of pose-fitting residuals that audio cannot predict. The window is long on
purpose: a pause of a few seconds must stay a closed mouth, not become the average.

Eyelids: a blink is a few pixels of a low-resolution head in a few frames of a clip, too little for the
photometric loss to teach the eye token to close the eyes. The lids' tracked motion is nearly a linear
function of the eye openness (r ~ -0.9 for the upper lids' middle points on real clips), so the fit measures
that line once (`eyelid_rig`: the least-squares slope of each lid landmark's motion against the openness) and
every frame moves the lid landmarks by (openness - the clip's mean openness) x slope.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import uniform_filter1d
from torch import Tensor

from avatar.core.pinhole import project
from avatar.data.dataset import Tracking
from avatar.face.landmarks import MOUTH_AND_JAW

MIN_EYE_STD = 0.02  # eye openness varying less than this over the training frames: no blinks to fit lids to


def landmark_displacements(
    landmarks: np.ndarray,
    rotations: np.ndarray,
    translations: np.ndarray,
    intrinsics: np.ndarray,
    canonical: np.ndarray,
    indices: tuple[int, ...] = MOUTH_AND_JAW,
) -> np.ndarray:
    """Non-rigid motion of landmarks `indices` in every frame (see the module docstring).

    Args:
        landmarks: np.ndarray  # [F, 478, >=2] x, y in crop pixels
        rotations: np.ndarray  # [F, 3, 3] head -> camera
        translations: np.ndarray  # [F, 3]
        intrinsics: np.ndarray  # [3, 3]
        canonical: np.ndarray  # [478, 3] head frame, metres
    Returns:
        displacements: np.ndarray  # [F, J, 3] head frame, metres
    """
    points = canonical[list(indices)].astype(np.float64)  # [J, 3]
    depth = np.einsum("fij,kj->fki", rotations[:, 2:3], points) + translations[:, None, 2:3]  # [F, J, 1]
    focal = np.array([intrinsics[0, 0], intrinsics[1, 1]])
    projected = project(points, rotations, translations, intrinsics)  # [F, J, 2]
    residual = landmarks[:, list(indices), :2] - projected  # pixels
    shift_camera = np.concatenate([residual * depth / focal, np.zeros_like(depth)], axis=-1)
    return np.einsum("fji,fkj->fki", rotations, shift_camera).astype(np.float32)  # R^T shift


def tracked_motion(tracking: Tracking, indices: tuple[int, ...]) -> np.ndarray:
    """[F, J, 3] the articulation of landmarks `indices` in every frame of a capture: `mouth_motion_targets` of
    their `landmark_displacements`, head frame, metres."""
    return mouth_motion_targets(_tracked_displacements(tracking, indices))


def tracked_positions(tracking: Tracking, indices: tuple[int, ...]) -> np.ndarray:
    """[F, J, 3] where landmarks `indices` are in every frame of a capture: the canonical face plus their
    `landmark_displacements`, head frame, metres."""
    canonical = tracking.canonical_landmarks[list(indices)].astype(np.float32)
    return canonical[None] + _tracked_displacements(tracking, indices)


def _tracked_displacements(tracking: Tracking, indices: tuple[int, ...]) -> np.ndarray:
    return landmark_displacements(
        tracking.landmarks,
        tracking.rotations,
        tracking.translations,
        tracking.intrinsics,
        tracking.canonical_landmarks,
        indices,
    )


def mouth_motion_targets(displacements: np.ndarray, drift_frames: int = 251) -> np.ndarray:
    """[F, J, 3] -> [F, J, 3]: the displacements minus their centred moving average over `drift_frames`."""
    drift = uniform_filter1d(displacements.astype(np.float64), drift_frames, axis=0, mode="nearest")
    return (displacements - drift).astype(np.float32)


def rest_motion(
    targets: np.ndarray, loudness: np.ndarray, frames: np.ndarray, quantile: float = 0.1
) -> np.ndarray:
    """The mouth at rest: the mean target over the `quantile` quietest of `frames`.

    Silence longer than the capture's pauses is trained towards it, so that a silent stretch of new audio shows
    the mouth as the person holds it between sentences.

    Args:
        targets: np.ndarray  # [F, J, 3] from `mouth_motion_targets`
        loudness: np.ndarray  # [F] (`avatar.audio.sync.speech_loudness`)
        frames: np.ndarray  # [T] the frames to choose from (the training frames)
    Returns:
        rest: np.ndarray  # [J, 3]
    """
    frames = np.asarray(frames)
    quiet = frames[loudness[frames] <= np.quantile(loudness[frames], quantile)]
    return targets[quiet].mean(axis=0)


@dataclass(frozen=True)
class EyelidRig:
    """How the lid landmarks move with the eye openness: motion = (eye - centre) x slopes."""

    anchors: Tensor  # [K, 3] the `EYELIDS` landmarks in the canonical head, metres
    slopes: Tensor  # [K, 3] metres per unit of eye openness, head frame
    centre: float | Tensor  # the eye openness at which the lids are where the canonical head has them ([])

    def motion(self, eye: Tensor) -> Tensor:
        """eye [B] -> [B, K, 3] the lid landmarks' motion."""
        return (eye.float() - self.centre)[:, None, None] * self.slopes


def eyelid_rig(
    canonical_lids: np.ndarray, lid_targets: np.ndarray, eye: np.ndarray, frames: np.ndarray
) -> EyelidRig:
    """The least-squares line of each lid landmark's tracked motion against the eye openness over `frames`
    (the training frames); zero slopes when the openness barely varies there (no blinks to learn from).

    Args:
        canonical_lids: np.ndarray  # [K, 3] the lid landmarks of the canonical face
        lid_targets: np.ndarray  # [F, K, 3] their motion, `mouth_motion_targets` of their displacements
        eye: np.ndarray  # [F] eye openness (1 the clip's usual open eye, 0 closed)
        frames: np.ndarray  # [T] frame indices to fit on
    """
    openness = np.asarray(eye, np.float64)[frames]
    motion = np.asarray(lid_targets, np.float64)[frames]
    valid = np.isfinite(openness) & np.isfinite(motion).all(axis=(1, 2))
    openness, motion = openness[valid], motion[valid]
    centre = float(openness.mean()) if len(openness) else 1.0
    deviation = openness - centre
    if len(openness) < 2 or deviation.std() < MIN_EYE_STD:
        slopes = np.zeros(canonical_lids.shape)
    else:
        slopes = np.einsum("f,fkc->kc", deviation, motion - motion.mean(axis=0)) / (deviation @ deviation)
    return EyelidRig(
        anchors=torch.as_tensor(canonical_lids, dtype=torch.float32),
        slopes=torch.as_tensor(slopes, dtype=torch.float32),
        centre=centre,
    )


def skin_offsets(
    canonical_means: Tensor,
    anchors: Tensor,
    motion: Tensor,
    sigma: float,
    *,
    gaussian_sides: Tensor | None = None,
    anchor_sides: Tensor | None = None,
    interpolation_sigma: float | None = None,
) -> Tensor:
    """Offsets of Gaussians that follow the landmarks near them.

    Gaussian i moves by sum_j w_ij m_j / max(1, sum_j w_ij) with w_ij = exp(-|x_i - a_j|^2 / 2 sigma^2): the
    weighted mean of its neighbours' motion inside the mouth region, fading to nothing away from it. With
    sides (-1, 0 or +1 each, e.g. `lip_sides`), w_ij is zero where the Gaussian and the landmark lie on
    opposite sides (a side of 0 follows both), so the two lips of a closing mouth do not average each other.

    With `interpolation_sigma` (smaller than `sigma`), the mean is taken with the narrower kernel's weights,
    normalised, and only the fade, min(1, sum_j w_ij), keeps `sigma`'s reach: a Gaussian on a landmark moves
    as that landmark does rather than as the mean of everything within `sigma` (on a fitted lower lip the wide
    mean moved 0.69 of the inner lip's motion, so the rendered mouth opened 0.8 of the tracked one).

    Args:
        canonical_means: Tensor  # [N, 3]
        anchors: Tensor  # [J, 3] the landmarks in the canonical head
        motion: Tensor  # [B, J, 3]
        gaussian_sides: Tensor | None  # [N]
        anchor_sides: Tensor | None  # [J]
        interpolation_sigma: float | None  # metres; None: the mean with `sigma`'s weights
    Returns:
        offsets: Tensor  # [B, N, 3]
    """
    squared = torch.cdist(canonical_means, anchors).square()  # [N, J]
    weights = torch.exp(-squared / (2 * sigma**2))
    allowed = None
    if gaussian_sides is not None and anchor_sides is not None:
        allowed = gaussian_sides[:, None] * anchor_sides[None, :] >= 0
        weights = weights * allowed
    reach = weights.sum(dim=1, keepdim=True)
    if interpolation_sigma is None:
        weights = weights / reach.clamp_min(1.0)
    else:
        logits = -squared / (2 * interpolation_sigma**2)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, -torch.inf)
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0) * reach.clamp_max(1.0)
    return torch.einsum("nj,bjc->bnc", weights, motion)


def lip_sides(points: Tensor, upper_lip: Tensor, lower_lip: Tensor) -> Tensor:
    """Which lip each point belongs with, from the inner lip curves of the canonical head.

    The curves are piecewise linear in x (head frame: x across the face, y down), corner to corner. A point
    above both curves is on the upper lip's side (-1), below both on the lower lip's (+1); a point between
    them (inside the canonical opening) or beyond a corner follows both (0).

    Args:
        points: Tensor  # [N, 3]
        upper_lip: Tensor  # [K, 3] the upper inner lip, corner to corner (`INNER_LIP_UPPER`)
        lower_lip: Tensor  # [K, 3] the lower inner lip, the same corners (`INNER_LIP_LOWER`)
    Returns:
        sides: Tensor  # [N] -1, 0 or +1, float
    """
    x, y = points[:, 0], points[:, 1]
    upper = _curve(upper_lip, x)
    lower = _curve(lower_lip, x)
    corners = torch.stack([upper_lip[0, 0], upper_lip[-1, 0]])
    inside_corners = (x > corners.min()) & (x < corners.max())
    between = (y - upper) * (y - lower) < 0
    sides = torch.sign(y - 0.5 * (upper + lower))
    return torch.where(inside_corners & ~between, sides, torch.zeros_like(sides))


def _curve(polyline: Tensor, x: Tensor) -> Tensor:
    """The y of a polyline [K, 3] (any x order) at x [N], linear between its points, constant beyond them."""
    order = torch.argsort(polyline[:, 0])
    xs, ys = polyline[order, 0].contiguous(), polyline[order, 1]
    right = torch.searchsorted(xs, x.contiguous()).clamp(1, len(xs) - 1)
    left = right - 1
    span = (xs[right] - xs[left]).clamp_min(1e-9)
    t = ((x - xs[left]) / span).clamp(0.0, 1.0)
    return ys[left] + t * (ys[right] - ys[left])
