"""The fit's loss terms, as pure functions of tensors, and their weighted sum.

Images are [R, R, C] in [0, 1]; masks [R, R, 1] in {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from avatar.metrics.image import ssim
from avatar.runs.settings import Stage, TrainSettings

OFFSET_SCALE_M = 0.01  # a position offset of 1 cm costs 1 in the offset regulariser


def absolute_error(rgb: Tensor, target: Tensor) -> Tensor:
    """[R, R, C] both -> [R, R, C] |rgb - target|: the error image the L1 and mouth terms share."""
    return (rgb - target).abs()


def l1_loss(error: Tensor) -> Tensor:
    """Mean of an `absolute_error` image."""
    return error.mean()


def dssim_loss(rgb: Tensor, target: Tensor) -> Tensor:
    """1 - SSIM."""
    return 1 - ssim(rgb, target)


def alpha_loss(alpha: Tensor, head_mask: Tensor) -> Tensor:
    """Mean absolute difference of the rendered alpha [R, R, 1] and the head mask."""
    return (alpha - head_mask).abs().mean()


def mouth_region_loss(error: Tensor, mouth_mask: Tensor) -> Tensor:
    """Mean of an `absolute_error` image inside the mouth region (0 when the region is empty)."""
    return (error * mouth_mask).sum() / (error.shape[-1] * mouth_mask.sum()).clamp_min(1.0)


def offset_loss(deformed_means: Tensor, canonical_means: Tensor) -> Tensor:
    """[N, 3] both, metres -> mean squared position offset in units of OFFSET_SCALE_M."""
    return ((deformed_means - canonical_means) / OFFSET_SCALE_M).square().sum(-1).mean()


def motion_loss(predicted: Tensor, target: Tensor, sigma: float) -> Tensor:
    """[B, J, 3] predicted and tracked landmark motion, metres -> mean squared error in units of sigma."""
    return (predicted - target).square().sum(-1).mean() / sigma**2


def lip_gap_loss(
    predicted: Tensor, target: Tensor, upper: list[int], lower: list[int], sigma: float
) -> Tensor:
    """[B, J, 3] predicted and tracked landmark motion, metres; `upper`/`lower` the rows of facing inner-lip
    landmarks -> mean absolute error of how far each pair moves apart (lower - upper, summed over x, y, z), in
    units of sigma. Absolute, not squared: it does not pull closures and openings towards a half-open mean."""
    predicted_gap = predicted[:, lower] - predicted[:, upper]
    target_gap = target[:, lower] - target[:, upper]
    return (predicted_gap - target_gap).abs().sum(-1).mean() / sigma


@dataclass(frozen=True)
class LossTerms:
    """One step's loss terms (scalars); `total` weighs them as the settings say."""

    l1: Tensor
    dssim: Tensor
    alpha: Tensor
    mouth: Tensor
    offsets: Tensor
    motion: Tensor

    def total(self, settings: TrainSettings, stage: Stage) -> Tensor:
        mouth_weight = settings.mouth_weight * (2.0 if stage is Stage.MOUTH else 1.0)
        return (
            (1 - settings.ssim_weight) * self.l1
            + settings.ssim_weight * self.dssim
            + settings.alpha_weight * self.alpha
            + mouth_weight * self.mouth
            + settings.offset_weight * self.offsets
            + settings.motion_weight * self.motion
        )

    def values(self, total: Tensor) -> dict[str, float]:
        """{"loss": total, term: value, ...} as floats, with one device sync."""
        names = ["loss"] + [field.name for field in fields(self)]
        tensors = [total] + [getattr(self, field.name) for field in fields(self)]
        return dict(zip(names, torch.stack([tensor.detach() for tensor in tensors]).tolist()))
