"""Densification as a strategy object with hooks around the backward pass (after gsplat's DefaultStrategy).

The trainer calls `step_pre_backward` after rendering (to keep the screen-space gradient),
`step_post_backward` after `loss.backward()` (to accumulate it), and `step_post_optimizer` after the
optimiser's step, which clones, splits and prunes every `every` steps until `until` and resets opacities
every `opacity_reset_every` steps. Unlike gsplat's, densification runs after the optimiser's step, so that
step's update reaches every Gaussian before the rows change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar.model.talking_head import TalkingHead
from avatar.render.interface import RenderOutput
from avatar.runs.settings import TrainSettings
from avatar.train.densify import DensifyState, densify_and_prune, remap_adam_state, reset_opacity


@dataclass(frozen=True)
class DensifyStrategy:
    grad_threshold: float  # mean screen-space gradient norm (normalised image units) that densifies
    min_opacity: float  # below it a Gaussian is pruned
    max_count: int
    extent: float  # radius of the canonical head, metres
    every: int  # steps between densifications
    until: int  # the step at which densification and opacity resets stop
    opacity_reset_every: int = 0  # 0: never
    scale_threshold: float = 0.01  # of the extent: larger Gaussians are split, smaller ones cloned

    @staticmethod
    def from_settings(settings: TrainSettings, extent: float) -> DensifyStrategy:
        return DensifyStrategy(
            grad_threshold=settings.grad_threshold,
            min_opacity=settings.min_opacity,
            max_count=settings.max_gaussians,
            extent=extent,
            every=settings.densify_every,
            until=settings.densify_until,
            opacity_reset_every=settings.opacity_reset_every,
        )

    def step_pre_backward(self, out: RenderOutput) -> None:
        out.means2d.retain_grad()

    def step_post_backward(self, step: int, out: RenderOutput, state: DensifyState, image_size: int) -> None:
        if step < self.until and out.means2d.grad is not None:
            state.accumulate(out.means2d.grad, out.radii > 0, image_size=(image_size, image_size))

    def step_post_optimizer(
        self, step: int, model: TalkingHead, optimizer: torch.optim.Optimizer, state: DensifyState
    ) -> None:
        done = step + 1
        if step < self.until and done % self.every == 0 and done > self.every:
            result = densify_and_prune(
                model.gaussians,
                state,
                grad_threshold=self.grad_threshold,
                scale_threshold=self.scale_threshold,
                min_opacity=self.min_opacity,
                max_count=self.max_count,
                extent=self.extent,
            )
            remap_adam_state(optimizer, result.change)
        if self.opacity_reset_every and done % self.opacity_reset_every == 0 and done < self.until:
            reset_opacity(model.gaussians, optimizer=optimizer)
