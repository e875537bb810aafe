"""One training step's forward pass: a frame's conditions (augmented), the render, and the loss terms."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from avatar.audio.normalization import AudioAugmentation, augment_audio_windows
from avatar.core.backends import RasterizerName
from avatar.model.deformation import FACING_LIP_ROWS, FrameConditions
from avatar.model.talking_head import TalkingHead
from avatar.render.interface import RenderOutput
from avatar.render.rasterize import render_gaussians
from avatar.runs.settings import Stage, TrainSettings
from avatar.train import losses
from avatar.train.data import TrainingData
from avatar.train.frames import TargetFrame


@dataclass(frozen=True)
class TrainStep:
    """What every step of a fit shares: the model, its data, the settings and the rasterizer."""

    model: TalkingHead
    data: TrainingData
    settings: TrainSettings
    backend: RasterizerName

    def forward(
        self, target: TargetFrame, stage: Stage, generator: torch.Generator
    ) -> tuple[losses.LossTerms, RenderOutput]:
        """Renders the target frame as the model drives it and measures every loss term."""
        model, data = self.model, self.data
        sets, _ = model(self.conditions(target, stage, generator), deform=stage.deforms)
        gaussians = sets[0]
        out = render_gaussians(
            gaussians, target.viewmat, data.K, data.resolution, data.background, backend=self.backend
        )
        # the terms in this order, the error image shared: the gradients sum as in every earlier version
        error = losses.absolute_error(out.rgb, target.image)
        l1 = losses.l1_loss(error)
        dssim = losses.dssim_loss(out.rgb, target.image)
        alpha = losses.alpha_loss(out.alpha, target.head)
        mouth = losses.mouth_region_loss(error, target.mouth)
        offsets = torch.zeros((), device=target.image.device)
        if stage.deforms:
            offsets = losses.offset_loss(gaussians.means, model.gaussians.activated().means)
        motion = self.mouth_motion(generator)
        terms = losses.LossTerms(l1=l1, dssim=dssim, alpha=alpha, mouth=mouth, offsets=offsets, motion=motion)
        return terms, out

    def conditions(self, target: TargetFrame, stage: Stage, generator: torch.Generator) -> FrameConditions:
        """The target frame's conditions; once deforming, its audio augmented, with probability
        `settings.tracked_motion` its tracked mouth motion in place of the audio's prediction (the appearance
        then learns from true mouth shapes; a frame that smiles always shows it, so that the image loss does
        not teach the audio's prediction the smile: avatar/face/smiles.py) and, with probability
        `settings.view_swap`, another frame's viewpoint, so that the view token cannot tell the model which
        frame (and mouth) this is."""
        signals, window, device = self.data.signals, self.model.window, target.image.device
        conditions = signals.conditions([target.index], window=window, device=device)
        if not stage.deforms:
            return conditions
        conditions = replace(conditions, audio=self._augmented(conditions.audio, generator))
        tracked = float(torch.rand((), generator=generator)) < self.settings.tracked_motion
        tracked = tracked or bool(self.data.smiling[target.index])
        if tracked and self.model.deformation.audio_enabled:
            conditions = replace(conditions, motion=self.data.motion_targets[target.index][None])
        if float(torch.rand((), generator=generator)) < self.settings.view_swap:
            indices = self.data.train_indices
            other = int(indices[int(torch.randint(len(indices), (), generator=generator))])
            conditions = replace(
                conditions, view=signals.conditions([other], window=window, device=device).view
            )
        return conditions

    def mouth_motion(self, generator: torch.Generator) -> Tensor:
        """The mouth motion predicted from the audio of `settings.motion_batch` random training frames that do
        not smile (`TrainingData.motion_indices`) against the tracked motion, for each of the field's motion
        predictors on batches of its own (the mean of their losses); a fraction `settings.silence_probability`
        hear silence and must show the mouth at rest; plus `settings.lip_gap_weight` times the inner lips' gap
        error (`lip_gap_loss`). Every stage trains it; it needs no rendering."""
        settings, data, deformation = self.settings, self.data, self.model.deformation
        device = data.motion_targets.device
        if settings.motion_weight == 0 or not deformation.audio_enabled:
            return torch.zeros((), device=device)
        members = len(deformation.motion_predictors)
        batch = settings.motion_batch
        frames = data.motion_indices
        indices = frames[torch.randint(len(frames), (members * batch,), generator=generator).numpy()]
        audio = self._augmented(
            data.signals.conditions(indices, window=self.model.window, device=device).audio, generator
        )
        silent = torch.rand(len(indices), generator=generator) < settings.silence_probability
        audio = torch.where(silent.to(device)[:, None, None, None], torch.zeros_like(audio), audio)
        rows = torch.where(silent, len(data.motion_targets) - 1, torch.from_numpy(indices)).to(device)
        predicted = deformation.member_motions(audio.unflatten(0, (members, batch))).flatten(0, 1)
        target, sigma = data.motion_targets[rows], deformation.config.mouth_skinning_sigma
        gap = losses.lip_gap_loss(predicted, target, *FACING_LIP_ROWS, sigma)
        return losses.motion_loss(predicted, target, sigma) + settings.lip_gap_weight * gap

    def update_mouth_motion(self, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        """After a step's update, `settings.motion_updates - 1` more on the mouth-motion loss alone: only the
        parameters it reaches (the motion predictors) have gradients then, so nothing else moves."""
        for _ in range(self.settings.motion_updates - 1):
            loss = self.settings.motion_weight * self.mouth_motion(generator)
            if not loss.requires_grad:
                return
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def _augmented(self, audio: Tensor, generator: torch.Generator) -> Tensor:
        """[B, W, steps, C] driving features -> the same with the log-mel bands perturbed
        (`settings.audio_augmentation`) and, per sample with probability `settings.phone_dropout`, the phone
        channels zeroed; of the samples that keep their phones, `settings.log_mel_dropout` hear them alone (the
        log-mel bands zeroed), so that the phones, the same in every voice, can drive the mouth by themselves."""
        settings, n_mels = self.settings, self.model.config.n_mels
        log_mel, phones = audio[..., :n_mels], audio[..., n_mels:]
        if settings.audio_augmentation > 0:
            augmentation = AudioAugmentation(probability=settings.audio_augmentation)
            log_mel = augment_audio_windows(log_mel, generator, augmentation)
        if phones.shape[-1] and (settings.phone_dropout > 0 or settings.log_mel_dropout > 0):
            keep_phones = torch.rand(len(audio), generator=generator) >= settings.phone_dropout
            only_phones = torch.rand(len(audio), generator=generator) < settings.log_mel_dropout
            voiceless = keep_phones & only_phones & self.model.deformation.windows_with_phones(audio).cpu()
            phones = phones * keep_phones.to(audio.device, audio.dtype)[:, None, None, None]
            log_mel = log_mel * (~voiceless).to(audio.device, audio.dtype)[:, None, None, None]
        return torch.cat([log_mel, phones], dim=-1)
