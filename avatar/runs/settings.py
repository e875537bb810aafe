"""Settings of `avatar fit`: the command line, and the presets it starts from."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import tyro

from avatar.core.backends import DeviceName, HashGridName, RasterizerName

PresetName = Literal["tiny", "default"]


class Stage(str, Enum):
    """The training stages, in order."""

    CANONICAL = "canonical"  # the static head: Gaussians only, no deformation
    AUDIO = "audio"  # the audio-driven deformation joins in
    MOUTH = "mouth"  # the mouth region's loss doubled

    @property
    def deforms(self) -> bool:
        return self is not Stage.CANONICAL


@dataclass(frozen=True)
class TrainSettings:
    """Everything a preset fixes. Step counts are per stage: canonical head, audio-driven deformation, mouth."""

    deformation_preset: PresetName  # the DeformationConfig preset of the same name
    resolution: int | None  # side of the rendered head window; None = the window's own pixels
    steps_canonical: int
    steps_audio: int
    steps_mouth: int
    initial_gaussians: int
    max_gaussians: int
    lr_means: float = 1.6e-4  # times the head's extent (metres)
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_colors: float = 2.5e-2
    lr_deformation: float = 1e-3
    lr_hash_grid: float = 1e-2
    ssim_weight: float = 0.2
    alpha_weight: float = 0.1
    mouth_weight: float = 1.0  # extra L1 weight on the mouth region (doubled in the mouth stage)
    offset_weight: float = 1e-3  # regulariser on the per-Gaussian deltas
    motion_weight: float = 1.0  # the mouth motion predicted from audio against the tracked landmarks' motion
    lip_gap_weight: float = 0.2  # of the inner lips' gap error, absolute (`lip_gap_loss`), in the motion term
    motion_batch: int = 32  # frames per step of that loss
    motion_updates: int = 1  # motion predictor updates per step: the step's own, then on that loss alone
    silence_probability: float = 0.1  # of a motion sample hearing silence, with the mouth at rest as target
    audio_augmentation: float = 0.8  # probability that a training sample's audio features are perturbed
    phone_dropout: float = 0.3  # probability that a training sample hears no phones (as unaligned audio)
    log_mel_dropout: float = 0.3  # probability that a sample with phones hears only them (no voice)
    tracked_motion: float = 0.5  # probability that a rendered training frame shows its tracked mouth motion
    view_swap: float = 0.5  # probability that a training sample's view token comes from another frame
    densify_every: int = 100
    densify_until_fraction: float = 0.75  # of the canonical + audio stages
    grad_threshold: float = 2e-4  # screen-space gradient, normalised image units
    min_opacity: float = 0.005
    opacity_reset_every: int = 0  # 0 = never
    val_every: int = 200
    val_frames: int = 8
    checkpoint_every: int = 200
    steps_torso: int = 1200  # the torso's own fit, after the head's (avatar/train/torso_fit.py)
    torso_gaussians: int = 3000
    torso_resolution: int | None = 160  # side of the whole frame the torso is fitted at; None = the crop's

    @property
    def total_steps(self) -> int:
        return self.steps_canonical + self.steps_audio + self.steps_mouth

    def stage(self, step: int) -> Stage:
        if step < self.steps_canonical:
            return Stage.CANONICAL
        if step < self.steps_canonical + self.steps_audio:
            return Stage.AUDIO
        return Stage.MOUTH

    @property
    def densify_until(self) -> int:
        """The step at which densification (and opacity resets) stop."""
        return int(self.densify_until_fraction * (self.steps_canonical + self.steps_audio))

    def scaled_to(self, total: int) -> TrainSettings:
        """The same schedule stretched or shrunk to `total` steps."""
        factor = total / self.total_steps
        canonical = max(1, round(self.steps_canonical * factor))
        audio = max(1, round(self.steps_audio * factor))
        return replace(
            self,
            steps_canonical=canonical,
            steps_audio=audio,
            steps_mouth=max(0, total - canonical - audio),
            densify_every=max(10, round(self.densify_every * min(1.0, factor))),
            val_every=max(10, round(self.val_every * factor)),
            checkpoint_every=max(10, round(self.checkpoint_every * factor)),
            steps_torso=max(1, round(self.steps_torso * factor)),
        )


PRESETS: dict[str, TrainSettings] = {
    # CPU, minutes: a 128 px head window, a few thousand Gaussians.
    "tiny": TrainSettings(
        deformation_preset="tiny",
        resolution=128,
        steps_canonical=400,
        steps_audio=800,
        steps_mouth=300,
        initial_gaussians=4000,
        max_gaussians=12000,
        motion_updates=2,
        densify_every=100,
        val_every=300,
        checkpoint_every=200,
    ),
    # GPU, full resolution.
    "default": TrainSettings(
        deformation_preset="default",
        resolution=None,
        steps_canonical=6000,
        steps_audio=14000,
        steps_mouth=4000,
        initial_gaussians=20000,
        max_gaussians=150000,
        opacity_reset_every=3000,
        val_every=1000,
        checkpoint_every=1000,
        steps_torso=3000,
        torso_gaussians=30000,
        torso_resolution=None,
    ),
}


@dataclass
class FitConfig:
    """Fit an audio-driven Gaussian head to a capture dataset."""

    dataset: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="DATASET")]
    """A directory written by `avatar capture`."""
    out: Path
    """The run directory: checkpoints, logs, config."""
    preset: PresetName | None = None
    """`tiny`: CPU, minutes, low resolution. `default`: GPU, full resolution (hours on a CPU). Default:
    `default` on a CUDA GPU; without one, asked for explicitly."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""
    steps: int | None = None
    """Total steps (all stages, scaled proportionally); default: the preset's."""
    resolution: int | None = None
    """Side of the rendered head window in pixels; default: the preset's."""
    audio: bool = True
    """Drive the model with audio; --no-audio zeroes the audio tokens (an ablation)."""
    torso: bool = True
    """Fit Gaussians for the neck and shoulders after the head, rendered with it in one pass; --no-torso
    renders the capture's own torso pixels under the head instead (its camera only)."""
    device: DeviceName = "auto"
    """Where to train; auto = cuda when available."""
    backend: RasterizerName = "auto"
    """Rasterizer implementation: `cuda` is this project's kernels, `auto` the fastest available."""
    hash_grid: HashGridName = "auto"
    """Hash-grid implementation: `cuda` is this project's kernel, `tcnn` tiny-cuda-nn where installed."""
    seed: int = 0
    """Seed of the initial Gaussians and the frame order."""
    threads: int | None = None
    """CPU threads for torch; default: torch's."""
    progress: bool = True
    """Show a progress bar."""

    def settings(self, preset: PresetName) -> TrainSettings:
        """The preset's settings with this command line's --steps and --resolution."""
        settings = PRESETS[preset]
        if self.steps is not None:
            settings = settings.scaled_to(self.steps)
        if self.resolution is not None:
            settings = replace(settings, resolution=self.resolution)
        return settings
