"""One training step's forward pass: a frame's conditions (augmented), the render, and the loss terms."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from avatar.audio.normalization import AudioAugmentation, augment_audio_windows
from avatar.model.deformation import FrameConditions
from avatar.model.talking_head import TalkingHead
from avatar.render.output import RenderOutput
from avatar.render.rasterize import render_gaussians
from avatar.runs.settings import Stage, TrainSettings
from avatar.train.data import TrainingData
from avatar.train.frames import TargetFrame
from avatar.train.losses import (
    LossTerms,
    alpha_loss,
    dssim_loss,
    l1_loss,
    motion_loss,
    mouth_region_loss,
    offset_loss,
)


def _augmented(audio: Tensor, settings: TrainSettings, generator: torch.Generator) -> Tensor:
    if settings.audio_augmentation <= 0:
        return audio
    return augment_audio_windows(audio, generator, AudioAugmentation(probability=settings.audio_augmentation))


def training_conditions(
    model: TalkingHead,
    data: TrainingData,
    target: TargetFrame,
    stage: Stage,
    settings: TrainSettings,
    generator: torch.Generator,
) -> FrameConditions:
    """The target frame's conditions; once deforming, its audio augmented and, with probability
    `settings.view_swap`, another frame's viewpoint, so that the view token cannot tell the model which
    frame (and mouth) this is."""
    device = target.image.device
    conditions = data.signals.conditions([target.index], window=model.window, device=device)
    if not stage.deforms:
        return conditions
    conditions = replace(conditions, audio=_augmented(conditions.audio, settings, generator))
    if float(torch.rand((), generator=generator)) < settings.view_swap:
        indices = data.train_indices
        other = int(indices[int(torch.randint(len(indices), (), generator=generator))])
        view = data.signals.conditions([other], window=model.window, device=device).view
        conditions = replace(conditions, view=view)
    return conditions


def mouth_motion_term(
    model: TalkingHead, data: TrainingData, settings: TrainSettings, generator: torch.Generator
) -> Tensor:
    """The mouth motion predicted from the audio of `settings.motion_batch` random training frames against
    the tracked motion; a fraction `settings.silence_probability` hear silence and must show the mouth at
    rest. Every stage trains it; it needs no rendering."""
    device = data.motion_targets.device
    if settings.motion_weight == 0 or not model.deformation.audio_enabled:
        return torch.zeros((), device=device)
    picks = torch.randint(len(data.train_indices), (settings.motion_batch,), generator=generator).numpy()
    indices = data.train_indices[picks]
    audio = data.signals.conditions(indices, window=model.window, device=device).audio
    audio = _augmented(audio, settings, generator)
    silent = torch.rand(len(indices), generator=generator) < settings.silence_probability
    audio = torch.where(silent.to(device)[:, None, None, None], torch.zeros_like(audio), audio)
    rows = torch.where(silent, len(data.motion_targets) - 1, torch.from_numpy(indices)).to(device)
    deformation = model.deformation
    predicted = deformation.mouth_motion(deformation.audio_token(audio))
    return motion_loss(predicted, data.motion_targets[rows], deformation.config.mouth_skinning_sigma)


def training_forward(
    model: TalkingHead,
    data: TrainingData,
    target: TargetFrame,
    stage: Stage,
    settings: TrainSettings,
    generator: torch.Generator,
    backend: str,
) -> tuple[LossTerms, RenderOutput]:
    """Renders the target frame as the model drives it and measures every loss term."""
    conditions = training_conditions(model, data, target, stage, settings, generator)
    sets, _ = model(conditions, deform=stage.deforms)
    gaussians = sets[0]
    out = render_gaussians(
        gaussians, target.viewmat, data.K, data.resolution, data.background, backend=backend
    )
    offsets = torch.zeros((), device=target.image.device)
    if stage.deforms:
        offsets = offset_loss(gaussians.means, model.gaussians.activated().means)
    terms = LossTerms(
        l1=l1_loss(out.rgb, target.image),
        dssim=dssim_loss(out.rgb, target.image),
        alpha=alpha_loss(out.alpha, target.head),
        mouth=mouth_region_loss(out.rgb, target.image, target.mouth),
        offsets=offsets,
        motion=mouth_motion_term(model, data, settings, generator),
    )
    return terms, out
