"""`avatar fit`: set up (or resume) a run, then the training loop.

The pieces: `data` prepares the targets and signals, `step` runs one forward pass and its `losses`,
`strategy` densifies, `state` saves and restores, `log` writes train_log.csv, `validation` measures.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from avatar.audio.normalization import AudioNormalization, normalize_audio_windows
from avatar.audio.sync import audio_offset_frames, speech_loudness
from avatar.core.backends import resolve_device, resolve_hash_grid, resolve_rasterizer
from avatar.core.errors import AvatarError
from avatar.data.dataset import Dataset
from avatar.data.head_window import head_window
from avatar.face.landmarks import EYELIDS, MOUTH_AND_JAW
from avatar.model.deformation import DeformationConfig
from avatar.model.head_init import colors_from_frame, init_head_gaussians
from avatar.model.landmark_motion import eyelid_rig, tracked_motion
from avatar.model.talking_head import TalkingHead
from avatar.runs.checkpoint import has_checkpoint
from avatar.runs.record import FitSummary, RunRecord
from avatar.runs.run_dir import RunLayout, read_run
from avatar.runs.settings import PRESETS, FitConfig, PresetName, Stage, TrainSettings
from avatar.runs.torso_file import save_torso, torso_step
from avatar.train.data import TrainingData, prepare_training_data
from avatar.train.log import TrainLog
from avatar.train.losses import LossTerms
from avatar.train.state import TrainingState, head_extent
from avatar.train.step import TrainStep
from avatar.train.strategy import DensifyStrategy
from avatar.train.torso_fit import fit_torso
from avatar.train.validation import validation_psnr


def choose_preset(config: FitConfig, device: torch.device) -> PresetName:
    """--preset, or `default` on a CUDA GPU; without a GPU and without --preset, an error that explains."""
    if config.preset is not None:
        return config.preset
    if device.type == "cuda":
        return "default"
    steps = PRESETS["default"].total_steps
    raise AvatarError(
        f"no --preset was given and this fit would run on the {device.type}: the default preset "
        f"({steps} steps at full resolution) is made for a CUDA GPU and far too slow on a CPU",
        fix="Pass --preset tiny (a CPU fit in minutes), or --preset default to run the GPU preset anyway",
    )


def _check_out(out: Path, resume: bool) -> None:
    if resume:
        if not has_checkpoint(out):
            raise AvatarError(
                "--resume was given but the run directory has no checkpoint",
                path=out,
                fix="Start the fit without --resume",
            )
        return
    if has_checkpoint(out):
        raise AvatarError(
            "the run directory already holds a fit",
            path=out,
            fix="Pass --resume to continue it, or choose a new --out",
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AvatarError(
            f"the run directory cannot be created ({error.strerror or error})",
            path=out,
            fix="Choose a --out directory you can write to",
        ) from error


def new_run_record(dataset: Dataset, config: FitConfig, preset: PresetName) -> RunRecord:
    """What run.json says of a new run: the resolved settings, the head window and the audio offset."""
    settings = config.settings(preset)
    window = head_window(dataset, dataset.split.train)
    resolution = settings.resolution or window.side
    normalization = AudioNormalization()
    loudness = speech_loudness(normalize_audio_windows(dataset.audio_features(), normalization))
    offset, correlation = audio_offset_frames(dataset.tracking.mouth_openness, loudness)
    return RunRecord(
        dataset=Path(config.dataset).resolve(),
        dataset_source=dataset.manifest.source,
        fit=replace(config, preset=preset),
        settings=settings,
        window=window,
        resolution=resolution,
        intrinsics_window=tuple(
            map(tuple, window.intrinsics(dataset.tracking.intrinsics, resolution).tolist())
        ),
        audio_features=dataset.manifest.audio_features,
        audio_features_shape=dataset.manifest.audio_features_shape,
        audio_normalization=normalization,
        audio_offset_frames=offset,
        audio_offset_correlation=round(correlation, 4),
        fps=dataset.fps,
    )


def new_model(
    dataset: Dataset, config: FitConfig, settings: TrainSettings, device: torch.device
) -> TalkingHead:
    """Gaussians on and around the canonical face, coloured from the first training frame; the eyelid rig
    measured on the training frames."""
    tracking = dataset.tracking
    gaussians = init_head_gaussians(
        tracking.canonical_landmarks, settings.initial_gaussians, seed=config.seed
    )
    first = int(dataset.split.train[0])
    gaussians.set_colors(
        colors_from_frame(
            gaussians.means,
            tracking.rotations[first],
            tracking.translations[first],
            tracking.intrinsics,
            dataset.frame(first),
        )
    )
    return TalkingHead(
        gaussians.to(device),
        DeformationConfig.preset(settings.deformation_preset),
        mouth_anchors=torch.from_numpy(tracking.canonical_landmarks[list(MOUTH_AND_JAW)]).float(),
        eyelids=eyelid_rig(
            tracking.canonical_landmarks[list(EYELIDS)],
            tracked_motion(tracking, EYELIDS),
            tracking.eye_openness,
            dataset.split.train,
        ),
        audio_enabled=config.audio,
        hash_grid_backend=config.hash_grid,
        device=device,
    )


class FitRun:
    def __init__(self, config: FitConfig):
        self.config = config
        self.layout = RunLayout(Path(config.out))
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        rasterizer = resolve_rasterizer(
            config.backend, self.device
        )  # refuses what cannot run, before any work
        resolve_hash_grid(config.hash_grid, self.device)
        self.backend, self.backend_note = rasterizer.name, rasterizer.note
        self.preset = None if config.resume else choose_preset(config, self.device)  # resumed: run.json's
        self.dataset = Dataset(config.dataset)

    def _start(self) -> tuple[RunRecord, TrainingState]:
        """A new run (run.json written), or the resumed one with its training state."""
        _check_out(self.layout.root, self.config.resume)
        if self.preset is not None:
            record = new_run_record(self.dataset, self.config, self.preset)
            record.write(self.layout.record)
            model = new_model(self.dataset, self.config, record.settings, self.device)
            return record, TrainingState.start(model, record.settings, self.config.seed)
        record = read_run(self.layout.root)
        if record.dataset_source != self.dataset.manifest.source:
            raise AvatarError(
                "the run was fitted to a different dataset",
                path=self.config.dataset,
                fix="Resume with the same DATASET",
            )
        return record, TrainingState.restore(
            self.layout.root, record.settings, self.device, self.config.hash_grid
        )

    def run(self) -> FitSummary:
        record, state = self._start()
        settings = record.settings
        data = prepare_training_data(
            self.dataset,
            record,
            settings.val_frames,
            self.device,
            phones=state.model.config.phone_classes > 0,
            progress=self.config.progress,
        )
        strategy = DensifyStrategy.from_settings(settings, head_extent(state.model))
        forward = TrainStep(state.model, data, settings, self.backend)
        total, val_psnr = settings.total_steps, math.nan
        clock = time.perf_counter() - state.elapsed
        progress = tqdm(
            total=total, initial=state.step, desc="fit", disable=not self.config.progress, dynamic_ncols=True
        )
        with progress, TrainLog(self.layout.train_log, append=state.step > 0) as log:
            for step in range(state.step, total):
                stage = settings.stage(step)
                terms, loss = self._step(state, forward, strategy, step, stage)
                done = step + 1
                if data.val is not None and (done % settings.val_every == 0 or done == total):
                    val_psnr = validation_psnr(state.model, data, stage, self.backend)
                values = terms.values(loss)
                log.write(
                    done, stage, values, state.model.gaussians.num, val_psnr, time.perf_counter() - clock
                )
                progress.update(1)
                progress.set_postfix(
                    stage=stage.value,
                    loss=f"{values['loss']:.4f}",
                    val_psnr=f"{val_psnr:.2f}",
                    n=state.model.gaussians.num,
                )
                if done % settings.checkpoint_every == 0 and done < total:
                    log.flush()
                    state.save(self.layout.root, done, time.perf_counter() - clock, finished=False)
            if not state.finished:
                log.flush()
                state.save(self.layout.root, total, time.perf_counter() - clock, finished=True)
        if data.val is not None and math.isnan(val_psnr):  # resumed after the last step
            val_psnr = validation_psnr(state.model, data, settings.stage(total - 1), self.backend)
        self._fit_torso(state, data, settings, total)
        summary = self._summary(record, state, data, total, time.perf_counter() - clock, val_psnr)
        summary.write(self.layout.summary)
        return summary

    def _fit_torso(
        self, state: TrainingState, data: TrainingData, settings: TrainSettings, step: int
    ) -> None:
        """Fits the torso under the finished head and keeps it in the run, unless there is one for this step
        (or --no-torso)."""
        if not self.config.torso or torso_step(self.layout.torso) == step:
            return
        torso = fit_torso(
            state.model,
            self.dataset,
            data.signals,
            data.motion_targets[:-1],
            settings,
            self.backend,
            seed=self.config.seed,
            progress=self.config.progress,
        )
        save_torso(self.layout.torso, torso, step)

    def _step(
        self, state: TrainingState, forward: TrainStep, strategy: DensifyStrategy, step: int, stage: Stage
    ) -> tuple[LossTerms, Tensor]:
        """One optimisation step, with densification around it; -> (loss terms, total loss)."""
        frames = forward.data.frames
        target = frames.target(int(state.rng.integers(len(frames))), self.device)
        generator = torch.Generator().manual_seed(int(state.rng.integers(2**62)))
        terms, out = forward.forward(target, stage, generator)
        strategy.step_pre_backward(out)
        loss = terms.total(forward.settings, stage)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        strategy.step_post_backward(step, out, state.densify, forward.data.resolution)
        state.optimizer.step()
        strategy.step_post_optimizer(step, state.model, state.optimizer, state.densify)
        forward.update_mouth_motion(state.optimizer, generator)
        return terms, loss

    def _summary(
        self,
        record: RunRecord,
        state: TrainingState,
        data: TrainingData,
        steps: int,
        seconds: float,
        val_psnr: float,
    ) -> FitSummary:
        return FitSummary(
            run=self.layout.root,
            steps=steps,
            seconds=round(seconds, 1),
            val_psnr=val_psnr,
            gaussians=state.model.gaussians.num,
            audio_offset_frames=record.audio_offset_frames,
            device=str(self.device),
            rasterizer=self.backend,
            rasterizer_note=self.backend_note,
            hash_grid=type(state.model.deformation.hash_grid).__name__,
            motion_frames=len(data.motion_indices),
            smiling_frames=len(data.train_indices) - len(data.motion_indices),
        )


def run_fit(config: FitConfig) -> FitSummary:
    return FitRun(config).run()
