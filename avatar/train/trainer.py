"""`avatar fit`: the training loop, its stages, densification, validation, checkpoints and resuming."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from avatar.atomic import write_json
from avatar.audio_normalization import (
    AudioAugmentation,
    AudioNormalization,
    augment_audio_windows,
    normalize_audio_windows,
)
from avatar.audio_sync import audio_offset_frames, shift_frames, speech_loudness
from avatar.dataset import Dataset
from avatar.drive import choose_device, render_gaussians
from avatar.errors import AvatarError
from avatar.head_window import HeadWindow, head_window
from avatar.image_metrics import ssim
from avatar.model.deformation import DeformationConfig
from avatar.model.densify import DensifyState, densify_and_prune, remap_adam_state, reset_opacity
from avatar.model.head_init import colors_from_frame, init_head_gaussians
from avatar.model.landmark_motion import (
    MOUTH_LANDMARKS,
    landmark_displacements,
    mouth_motion_targets,
    rest_motion,
)
from avatar.model.talking_head import TalkingHead, frame_conditions
from avatar.train.checkpoint import Checkpoint, has_checkpoint, load_checkpoint, save_checkpoint
from avatar.train.config import FitConfig, TrainSettings, settings_from_dict
from avatar.train.frames import TargetFrame, TrainingFrames

RUN_FORMAT = "splat-avatar-run"
RUN_VERSION = 2
LOG_COLUMNS = (
    "step", "stage", "loss", "l1", "dssim", "alpha", "mouth", "offsets", "motion", "gaussians", "val_psnr",
    "seconds",
)  # fmt: skip


def read_run(run_dir: Path) -> dict:
    """The run's `run.json`: how to rebuild and drive its model."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise AvatarError(
            "this is not an `avatar fit` run directory (no run.json)",
            path=run_dir,
            fix="Pass the --out directory of `avatar fit`",
        )
    run = json.loads(path.read_text())
    if run.get("format") != RUN_FORMAT or run.get("version") != RUN_VERSION:
        raise AvatarError(
            f"run.json is not a {RUN_FORMAT} version {RUN_VERSION}",
            path=path,
            fix="Fit again with this version",
        )
    return run


def load_model(run_dir: Path, device: torch.device | str = "cpu") -> tuple[TalkingHead, dict, int]:
    """-> (model with the latest checkpoint's weights, run.json, checkpoint step)."""
    run = read_run(run_dir)
    checkpoint = load_checkpoint(run_dir, device)
    return model_from_checkpoint(checkpoint, device), run, checkpoint.step


def model_from_checkpoint(
    checkpoint: Checkpoint, device: torch.device | str, hash_grid_backend: str = "auto"
) -> TalkingHead:
    """The talking head shaped and weighted as the checkpoint's `model.*` tensors say."""
    model = TalkingHead.from_config(
        checkpoint.meta["model"], hash_grid_backend=hash_grid_backend, device=device
    )
    prefix = "model."
    model.load_state_dict(
        {name[len(prefix) :]: value for name, value in checkpoint.tensors.items() if name.startswith(prefix)}
    )
    return model.to(device)


def check_backends(config: FitConfig, device: torch.device) -> None:
    """Raises AvatarError, before any work, when --backend or --hash-grid cannot run on `device`."""
    for flag, name in (("--backend", config.backend), ("--hash-grid", config.hash_grid)):
        if name in ("cuda", "gsplat", "tcnn") and device.type != "cuda":
            raise AvatarError(
                f"{flag} {name} runs on a CUDA GPU, but this fit runs on {device.type}",
                fix=f"Pass {flag} auto (or torch), or --device cuda on a machine with a GPU",
            )
    if "cuda" in (config.backend, config.hash_grid):
        from cuda_ext.build import load_extension

        load_extension()  # builds the kernels now, or raises CudaExtensionUnavailable saying what is missing
    if config.backend == "gsplat":
        from cuda_ext.gsplat_backend import gsplat_import_error

        if (reason := gsplat_import_error()) is not None:
            raise AvatarError(f"--backend gsplat: {reason}", fix="pip install gsplat, or pass --backend auto")
    if config.hash_grid == "tcnn":
        from avatar.encoding import tcnn_unavailable_reason

        if (reason := tcnn_unavailable_reason()) is not None:
            raise AvatarError(f"--hash-grid tcnn: {reason}", fix="Pass --hash-grid auto")


class FitRun:
    def __init__(self, config: FitConfig):
        self.config = config
        self.out = Path(config.out)
        self.device = choose_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        check_backends(config, self.device)
        self.dataset = Dataset(config.dataset)
        self.backend, self.backend_note = config.backend, None
        if config.backend == "auto":
            from cuda_ext.backend_choice import auto_rasterizer_for

            self.backend, self.backend_note = auto_rasterizer_for(self.device)

    # ---- set-up -----------------------------------------------------------------------------------------
    def _check_out(self) -> None:
        if self.config.resume:
            if not has_checkpoint(self.out):
                raise AvatarError(
                    "--resume was given but the run directory has no checkpoint",
                    path=self.out,
                    fix="Start the fit without --resume",
                )
            return
        if has_checkpoint(self.out):
            raise AvatarError(
                "the run directory already holds a fit",
                path=self.out,
                fix="Pass --resume to continue it, or choose a new --out",
            )
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AvatarError(
                f"the run directory cannot be created ({error.strerror or error})",
                path=self.out,
                fix="Choose a --out directory you can write to",
            ) from error

    def _new_run(self) -> tuple[dict, TrainSettings]:
        settings = self.config.settings()
        split = self.dataset.split
        window = head_window(self.dataset, split["train"])
        resolution = settings.resolution or window.side
        run = {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "dataset": str(Path(self.config.dataset).resolve()),
            "dataset_source": self.dataset.manifest["source"],
            "fit": self.config.to_dict(),
            "settings": asdict(settings),
            "window": window.to_dict(),
            "resolution": resolution,
            "intrinsics_window": HeadWindow.intrinsics(
                window, self.dataset.tracking.intrinsics, resolution
            ).tolist(),
            "audio_features": self.dataset.manifest["audio_features"],
            "audio_normalization": AudioNormalization().to_dict(),
            **self._audio_offset(),
            "fps": self.dataset.fps,
        }
        write_json(self.out / "run.json", run)
        return run, settings

    def _audio_offset(self) -> dict:
        """How far the capture's audio is shifted against its frames in training (`avatar.audio_sync`)."""
        loudness = speech_loudness(normalize_audio_windows(self.dataset.audio_features()))
        offset, correlation = audio_offset_frames(self.dataset.tracking.mouth_openness, loudness)
        return {"audio_offset_frames": offset, "audio_offset_correlation": round(correlation, 4)}

    def _new_model(self, settings: TrainSettings) -> TalkingHead:
        tracking = self.dataset.tracking
        gaussians = init_head_gaussians(
            tracking.canonical_landmarks, settings.initial_gaussians, seed=self.config.seed
        )
        first = int(self.dataset.split["train"][0])
        gaussians.set_colors(
            colors_from_frame(
                gaussians.means,
                tracking.rotations[first],
                tracking.translations[first],
                tracking.intrinsics,
                self.dataset.frame(first),
            )
        )
        model = TalkingHead(
            gaussians.to(self.device),
            DeformationConfig.preset(settings.deformation_preset),
            mouth_anchors=torch.from_numpy(tracking.canonical_landmarks[list(MOUTH_LANDMARKS)]).float(),
            audio_enabled=self.config.audio,
            hash_grid_backend=self.config.hash_grid,
            device=self.device,
        )
        return model

    def _optimizer(self, model: TalkingHead, settings: TrainSettings, extent: float) -> torch.optim.Adam:
        params = model.gaussians.parameters_by_name()
        rates = {
            "means": settings.lr_means * extent,
            "quats": settings.lr_quats,
            "log_scales": settings.lr_scales,
            "opacity_logits": settings.lr_opacities,
            "color_logits": settings.lr_colors,
        }
        groups = [{"name": name, "params": [param], "lr": rates[name]} for name, param in params.items()]
        hash_params = list(model.deformation.hash_grid.parameters())
        hash_ids = {id(param) for param in hash_params}
        other = [param for param in model.deformation.parameters() if id(param) not in hash_ids]
        groups.append({"name": "hash_grid", "params": hash_params, "lr": settings.lr_hash_grid, "eps": 1e-15})
        groups.append({"name": "deformation", "params": other, "lr": settings.lr_deformation})
        return torch.optim.Adam(groups, eps=1e-15)

    # ---- checkpoint state ---------------------------------------------------------------------------------
    def _save(
        self,
        step: int,
        model,
        optimizer,
        densify: DensifyState,
        rng: np.random.Generator,
        elapsed: float,
        finished: bool,
    ):
        tensors = {f"model.{name}": value for name, value in model.state_dict().items()}
        for index, group in enumerate(optimizer.param_groups):
            for position, param in enumerate(group["params"]):
                for key, value in optimizer.state.get(param, {}).items():
                    tensors[f"optimizer.{index}.{position}.{key}"] = torch.as_tensor(value)
        tensors["densify.grad_norm_sum"] = densify.grad_norm_sum
        tensors["densify.visits"] = densify.visits
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "model": model.config_dict(),
            "learning_rates": [group["lr"] for group in optimizer.param_groups],
            "numpy_rng": rng.bit_generator.state,
            "elapsed_seconds": elapsed,
            "finished": finished,
        }
        save_checkpoint(self.out, step, tensors, meta)

    def _restore(self, settings: TrainSettings):
        checkpoint = load_checkpoint(self.out, self.device)
        model = model_from_checkpoint(checkpoint, self.device, self.config.hash_grid)
        optimizer = self._optimizer(model, settings, self._extent(model))
        for index, group in enumerate(optimizer.param_groups):
            group["lr"] = checkpoint.meta["learning_rates"][index]
            for position, param in enumerate(group["params"]):
                prefix = f"optimizer.{index}.{position}."
                entries = {k[len(prefix) :]: v for k, v in checkpoint.tensors.items() if k.startswith(prefix)}
                if entries:
                    optimizer.state[param] = entries
        densify = DensifyState(
            checkpoint.tensors["densify.grad_norm_sum"].to(self.device),
            checkpoint.tensors["densify.visits"].to(self.device),
        )
        torch.set_rng_state(checkpoint.tensors["rng.torch"].cpu())
        rng = np.random.default_rng()
        rng.bit_generator.state = checkpoint.meta["numpy_rng"]
        return (
            model,
            optimizer,
            densify,
            rng,
            checkpoint.step,
            float(checkpoint.meta["elapsed_seconds"]),
            bool(checkpoint.meta.get("finished")),
        )

    @staticmethod
    def _extent(model: TalkingHead) -> float:
        means = model.gaussians.means.detach()
        return float((means - means.mean(0)).norm(dim=-1).max())

    # ---- the loop ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        self._check_out()
        if self.config.resume:
            run = read_run(self.out)
            settings = settings_from_dict(run["settings"])
            if run["dataset_source"] != self.dataset.manifest["source"]:
                raise AvatarError(
                    "the run was fitted to a different dataset",
                    path=self.config.dataset,
                    fix="Resume with the same DATASET",
                )
            model, optimizer, densify, rng, start_step, elapsed, finished = self._restore(settings)
        else:
            run, settings = self._new_run()
            model = self._new_model(settings)
            optimizer = self._optimizer(model, settings, self._extent(model))
            densify = DensifyState.zeros(model.gaussians.num, self.device)
            rng = np.random.default_rng(self.config.seed)
            torch.manual_seed(self.config.seed)
            start_step, elapsed, finished = 0, 0.0, False

        window = HeadWindow.from_dict(run["window"])
        resolution = int(run["resolution"])
        split = self.dataset.split
        frames = TrainingFrames(
            self.dataset, split["train"], window, resolution, progress=self.config.progress
        )
        val_rows = (
            np.linspace(0, len(split["val"]) - 1, min(settings.val_frames, len(split["val"])))
            .round()
            .astype(int)
        )
        val = (
            TrainingFrames(self.dataset, split["val"][val_rows], window, resolution, progress=False)
            if len(split["val"])
            else None
        )
        K = torch.as_tensor(run["intrinsics_window"], dtype=torch.float32, device=self.device)
        background = frames.background.to(self.device)
        tracking = self.dataset.tracking
        normalization = AudioNormalization.from_dict(run["audio_normalization"])
        audio = normalize_audio_windows(self.dataset.audio_features(), normalization)
        audio = torch.from_numpy(shift_frames(audio, int(run["audio_offset_frames"])))
        signals = (audio, tracking.eye_openness, tracking.rotations, tracking.translations)
        displacements = landmark_displacements(
            tracking.landmarks,
            tracking.rotations,
            tracking.translations,
            tracking.intrinsics,
            tracking.canonical_landmarks,
        )
        targets = mouth_motion_targets(displacements)
        rest = rest_motion(targets, speech_loudness(audio.numpy()), frames.indices)
        motion_targets = torch.from_numpy(np.concatenate([targets, rest[None]])).to(self.device)
        extent = self._extent(model)
        total = settings.total_steps
        densify_until = int(
            settings.densify_until_fraction * (settings.steps_canonical + settings.steps_audio)
        )
        log_path = self.out / "train_log.csv"
        new_log = not log_path.exists() or start_step == 0
        log_file = open(log_path, "w" if new_log else "a", newline="")
        log = csv.writer(log_file)
        if new_log:
            log.writerow(LOG_COLUMNS)
        val_psnr = float("nan")
        progress = tqdm(
            total=total, initial=start_step, desc="fit", disable=not self.config.progress, dynamic_ncols=True
        )
        clock = time.perf_counter() - elapsed
        step = start_step
        try:
            for step in range(start_step, total):
                stage = settings.stage(step)
                target = frames.target(int(rng.integers(len(frames))), self.device)
                audio_generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
                losses, out = self._train_step(
                    model,
                    target,
                    signals,
                    motion_targets,
                    frames.indices,
                    stage,
                    K,
                    resolution,
                    background,
                    settings,
                    audio_generator,
                )
                loss = losses["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if step < densify_until and out.means2d.grad is not None:
                    densify.accumulate(out.means2d.grad, out.radii > 0, image_size=(resolution, resolution))
                optimizer.step()
                done = step + 1
                if (
                    step < densify_until
                    and done % settings.densify_every == 0
                    and done > settings.densify_every
                ):
                    result = densify_and_prune(
                        model.gaussians,
                        densify,
                        grad_threshold=settings.grad_threshold,
                        scale_threshold=0.01,
                        min_opacity=settings.min_opacity,
                        max_count=settings.max_gaussians,
                        extent=extent,
                    )
                    remap_adam_state(optimizer, result.change)
                if (
                    settings.opacity_reset_every
                    and done % settings.opacity_reset_every == 0
                    and done < densify_until
                ):
                    reset_opacity(model.gaussians, optimizer=optimizer)
                if val is not None and (done % settings.val_every == 0 or done == total):
                    val_psnr = self._validate(model, val, signals, stage, K, resolution, background)
                values = torch.stack([v.detach() for v in losses.values()]).tolist()  # one sync a step
                row = dict(zip(losses, values))
                log.writerow(
                    [done, stage]
                    + [f"{row[name]:.5f}" for name in LOG_COLUMNS[2:9]]
                    + [model.gaussians.num, f"{val_psnr:.3f}", f"{time.perf_counter() - clock:.3f}"]
                )
                progress.update(1)
                progress.set_postfix(
                    stage=stage, loss=f"{row['loss']:.4f}", val_psnr=f"{val_psnr:.2f}", n=model.gaussians.num
                )
                if done % settings.checkpoint_every == 0 and done < total:
                    log_file.flush()
                    self._save(done, model, optimizer, densify, rng, time.perf_counter() - clock, False)
            if not finished:
                log_file.flush()
                self._save(total, model, optimizer, densify, rng, time.perf_counter() - clock, True)
        finally:
            progress.close()
            log_file.close()
        return {
            "steps": total,
            "seconds": round(time.perf_counter() - clock, 1),
            "val_psnr": val_psnr,
            "gaussians": model.gaussians.num,
            "audio_offset_frames": int(run["audio_offset_frames"]),
            "device": str(self.device),
            "rasterizer": self.backend,
            "rasterizer_note": self.backend_note,
            "hash_grid": type(model.deformation.hash_grid).__name__,
            "run": str(self.out),
        }

    def _train_step(
        self,
        model,
        target: TargetFrame,
        signals,
        motion_targets: torch.Tensor,  # [F + 1, J, 3]: every frame's, then the mouth at rest
        train_indices: np.ndarray,
        stage,
        K,
        resolution,
        background,
        settings,
        generator: torch.Generator,
    ):
        deform = stage != "canonical"
        augmentation = AudioAugmentation(probability=settings.audio_augmentation)
        conditions = frame_conditions(*signals, [target.index], window=model.window, device=self.device)
        if deform and settings.audio_augmentation > 0:
            conditions = replace(
                conditions, audio=augment_audio_windows(conditions.audio, generator, augmentation)
            )
        if deform and float(torch.rand((), generator=generator)) < settings.view_swap:
            # Another frame's viewpoint: the view token must not tell the model which frame (and mouth) this is.
            other = int(train_indices[int(torch.randint(len(train_indices), (), generator=generator))])
            view = frame_conditions(*signals, [other], window=model.window, device=self.device).view
            conditions = replace(conditions, view=view)
        sets, _ = model(conditions, deform=deform)
        gaussians = sets[0]
        out = render_gaussians(gaussians, target.viewmat, K, resolution, background, backend=self.backend)
        out.means2d.retain_grad()
        rgb = out.rgb
        error = (rgb - target.image).abs()
        l1 = error.mean()
        dssim = 1 - ssim(rgb, target.image)
        alpha = (out.alpha - target.head).abs().mean()
        mouth_weight = settings.mouth_weight * (2.0 if stage == "mouth" else 1.0)
        mouth = (error * target.mouth).sum() / (3 * target.mouth.sum()).clamp_min(1.0)
        offsets = torch.zeros((), device=self.device)
        if deform:
            canonical = model.gaussians.activated()
            offsets = ((gaussians.means - canonical.means) / 0.01).square().sum(-1).mean()
        motion = self._mouth_motion_loss(model, signals, motion_targets, train_indices, settings, generator)
        loss = (
            (1 - settings.ssim_weight) * l1
            + settings.ssim_weight * dssim
            + settings.alpha_weight * alpha
            + mouth_weight * mouth
            + settings.offset_weight * offsets
            + settings.motion_weight * motion
        )
        losses = {
            "loss": loss, "l1": l1, "dssim": dssim, "alpha": alpha, "mouth": mouth, "offsets": offsets,
            "motion": motion,
        }  # fmt: skip
        return {name: value if name == "loss" else value.detach() for name, value in losses.items()}, out

    def _mouth_motion_loss(
        self, model, signals, motion_targets: torch.Tensor, train_indices, settings, generator
    ) -> torch.Tensor:
        """Mean squared error (in units of the skinning sigma) of the mouth motion predicted from the audio of
        `settings.motion_batch` random training frames; every stage trains it, no rendering needed. A fraction
        `settings.silence_probability` of them hear silence instead and must show the mouth at rest."""
        if settings.motion_weight == 0 or not model.deformation.audio_enabled:
            return torch.zeros((), device=self.device)
        picks = torch.randint(len(train_indices), (settings.motion_batch,), generator=generator).numpy()
        indices = train_indices[picks]
        conditions = frame_conditions(*signals, indices, window=model.window, device=self.device)
        audio = conditions.audio
        if settings.audio_augmentation > 0:
            augmentation = AudioAugmentation(probability=settings.audio_augmentation)
            audio = augment_audio_windows(audio, generator, augmentation)
        silent = torch.rand(len(indices), generator=generator) < settings.silence_probability
        audio = torch.where(silent.to(self.device)[:, None, None, None], torch.zeros_like(audio), audio)
        rows = torch.where(silent, len(motion_targets) - 1, torch.from_numpy(indices)).to(self.device)
        deformation = model.deformation
        predicted = deformation.mouth_motion(deformation.audio_token(audio))
        error = (predicted - motion_targets[rows]).square().sum(-1)
        return error.mean() / deformation.config.mouth_skinning_sigma**2

    @torch.no_grad()
    def _validate(self, model, val: TrainingFrames, signals, stage, K, resolution, background) -> float:
        errors = []
        for row in range(len(val)):
            target = val.target(row, self.device)
            conditions = frame_conditions(*signals, [target.index], window=model.window, device=self.device)
            sets, _ = model(conditions, deform=stage != "canonical")
            out = render_gaussians(sets[0], target.viewmat, K, resolution, background, backend=self.backend)
            errors.append(float((out.rgb - target.image).square().mean()))
        mse = float(np.mean(errors))
        return 10 * math.log10(1 / max(mse, 1e-12))


def run_fit(config: FitConfig) -> dict:
    return FitRun(config).run()
