"""Held-out PSNR of the head window during a fit."""

from __future__ import annotations

import math

import numpy as np
import torch

from avatar.model.talking_head import TalkingHead
from avatar.render.rasterize import render_gaussians
from avatar.runs.settings import Stage
from avatar.train.data import TrainingData


@torch.no_grad()
def validation_psnr(model: TalkingHead, data: TrainingData, stage: Stage, backend: str) -> float:
    """PSNR (dB) of the held-out frames' head windows, each driven by its own audio and pose."""
    if data.val is None:
        return math.nan
    device = data.K.device
    errors = []
    for row in range(len(data.val)):
        target = data.val.target(row, device)
        conditions = data.signals.conditions([target.index], window=model.window, device=device)
        sets, _ = model(conditions, deform=stage.deforms)
        out = render_gaussians(
            sets[0], target.viewmat, data.K, data.resolution, data.background, backend=backend
        )
        errors.append(float((out.rgb - target.image).square().mean()))
    return 10 * math.log10(1 / max(float(np.mean(errors)), 1e-12))
