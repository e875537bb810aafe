"""The `avatar` command: one subcommand per stage of the pipeline."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tyro

from avatar.core.errors import AvatarError

if TYPE_CHECKING:
    from avatar.data.manifest import CaptureReport
    from avatar.eval.evaluate import TorsoScores


@dataclass
class SampleCommand:
    """Write the built-in sample talking clip (generated, no download) and its ground truth."""

    out: Path = Path("out/sample")
    """Directory for sample.mp4 and sample_ground_truth.json."""
    seconds: float = 12.0
    """Length of the clip."""
    seed: int = 0
    """Seed of the synthetic speech, blinks and head motion."""


@dataclass
class DemoCommand:
    """The whole pipeline on the built-in sample: generate it, capture it, fit the tiny preset, drive it with
    new synthetic speech."""

    out: Path = Path("out/demo")
    """Working directory of the demo (re-running it finishes or reuses what is there)."""
    steps: int | None = None
    """Fit steps; default: the tiny preset's."""
    progress: bool = True
    """Show progress bars."""


def _run_sample(command: SampleCommand) -> None:
    from avatar.sample.clip import make_sample_clip

    clip = make_sample_clip(command.out, seconds=command.seconds, seed=command.seed)
    print(f"sample clip: {clip.video}\nground truth: {clip.ground_truth}")


def _run_capture(config) -> None:
    from capture.pipeline import run_capture

    report = run_capture(config)
    _print_capture_report(config.out, report)


def _print_capture_report(out: Path, report: CaptureReport) -> None:
    print(
        f"dataset: {out}\n"
        f"  frames {report.frames_total} (tracked {report.frames_tracked}, "
        f"interpolated {report.frames_interpolated}, missing {report.frames_missing})\n"
        f"  focal {report.focal_px:.1f} px, reprojection error {report.reprojection_error_px:.2f} px, "
        f"{report.blinks} blinks\n"
        f"  {report.seconds:.1f} s ({report.frames_per_second:.1f} frames/s)\n"
        f"  preview: {Path(out) / 'preview.png'}"
    )


def _run_demo(command: DemoCommand) -> None:
    from avatar.drive.video import RenderConfig
    from avatar.media.audio_io import save_wav
    from avatar.runs.checkpoint import has_checkpoint
    from avatar.runs.settings import FitConfig
    from avatar.sample.clip import make_sample_clip
    from avatar.sample.speech import synthesize_speech
    from capture.config import CaptureConfig

    clip = make_sample_clip(command.out / "sample")
    print(f"sample clip: {clip.video}")
    dataset = command.out / "dataset"
    _run_capture(CaptureConfig(video=clip.video, out=dataset))
    run = command.out / "run"
    _run_fit(
        FitConfig(
            dataset=dataset,
            out=run,
            preset="tiny",
            steps=command.steps,
            resume=has_checkpoint(run),
            progress=command.progress,
        )
    )
    speech = command.out / "new_speech.wav"
    save_wav(speech, synthesize_speech(8.0, 16000, seed=7).audio, 16000)
    _run_render(
        RenderConfig(run=run, audio=speech, out=command.out / "driven.mp4", progress=command.progress)
    )


def _run_fit(config) -> None:
    from avatar.train.trainer import run_fit

    summary = run_fit(config)
    print(
        f"run: {summary.run}\n  {summary.steps} steps in {summary.seconds:.0f} s, "
        f"{summary.gaussians} Gaussians, held-out PSNR {summary.val_psnr:.2f} dB\n"
        f"  the capture's audio was lined up with its mouth motion by {summary.audio_offset_frames} frames\n"
        f"  the mouth motion learned from {summary.motion_frames} training frames ({summary.smiling_frames} "
        "left out: they smile)\n"
        f"  rasterizer {summary.rasterizer}, hash grid {summary.hash_grid}"
    )
    if summary.rasterizer_note and summary.device.startswith("cuda"):
        print(f"  our CUDA kernels were not used: {summary.rasterizer_note}")
    if config.audio:
        from avatar.drive.driver import load_fitted

        fitted = load_fitted(summary.run, device=config.device, backend=config.backend)
        if fitted.hears_phones:
            print(f"  {fitted.phone_check.summary()}")


def _run_render(config) -> None:
    from avatar.drive.video import render_video

    result = render_video(config)
    print(f"video: {result.video} ({result.frames} frames, {result.seconds_of_audio:.1f} s of audio)")
    if result.phones_note:
        print(f"  {result.phones_note}")
    if result.mouth_note:
        print(f"  {result.mouth_note}")


def _torso_line(label: str, scores: TorsoScores) -> str:
    return (
        f"  {label}: head box {scores.psnr_head_box:.2f} dB, head {scores.psnr_head:.2f} dB, torso "
        f"{scores.psnr_torso:.2f} dB, SSIM {scores.ssim_torso:.4f}, neck {scores.psnr_neck:.2f} dB"
    )


def _lip_sync_line(name: str, summary) -> str:
    from avatar.eval.lip_sync import auc_text

    if summary is None:
        return f"  {name}: no lip-sync score"
    spread = (
        "" if summary.spread_ratio is None else f", mouth spread {summary.spread_ratio:.2f} x the real one"
    )
    return (
        f"  {name}: {auc_text(summary.auc_lag0, summary.auc_best_lag, summary.best_lag)} "
        f"({summary.open_frames} open-vowel, {summary.closed_frames} closure frames){spread}"
    )


def _run_eval(config) -> None:
    from avatar.eval.evaluate import DrivenEvalMetrics, evaluate

    metrics = evaluate(config)
    if isinstance(metrics, DrivenEvalMetrics):
        lines = [
            f"driven by {metrics.audio}: {metrics.frames} frames ({metrics.frames_without_face} without a face)",
            _lip_sync_line(
                "rendered" if metrics.phones is None else f"rendered, against {metrics.phones}",
                metrics.lip_sync,
            ),
            _lip_sync_line("the capture's own video", metrics.lip_sync_reference),
        ]
        if metrics.phonetic is not None:
            lines.append(f"  {metrics.phonetic.summary()}")
    else:
        lines = [
            f"held-out frames: {metrics.frames}",
            f"  PSNR {metrics.psnr:.2f} dB (head box {metrics.psnr_head_box:.2f}, mouth {metrics.psnr_mouth:.2f}), "
            f"SSIM {metrics.ssim:.4f} (head box {metrics.ssim_head_box:.4f})",
            f"  head mask PSNR {metrics.psnr_head:.2f} dB; {metrics.torso} torso: PSNR {metrics.psnr_torso:.2f} dB, "
            f"SSIM {metrics.ssim_torso:.4f}, neck band PSNR {metrics.psnr_neck:.2f} dB",
            *(
                _torso_line(label, scores)
                for label, scores in (
                    ("with the Gaussian torso's own colours (other cameras)", metrics.torso_gaussian_colours),
                    ("with the capture's torso pasted under the head alone", metrics.torso_pasted),
                )
                if scores is not None
            ),
            f"  LMD {metrics.lmd_px:.2f} px, mouth-opening correlation {metrics.mouth_open_correlation:.3f}",
            f"  rendering {metrics.render_fps:.1f} frames/s on {metrics.device}",
            _lip_sync_line("rendered held-out frames", metrics.lip_sync),
            _lip_sync_line("real held-out frames", metrics.lip_sync_real),
            _lip_sync_line("the capture's own video", metrics.lip_sync_reference),
        ]
    if metrics.lip_sync_note:
        lines.append(f"  lip sync not scored: {metrics.lip_sync_note}")
    if metrics.phone_check is not None:
        lines.append(f"  {metrics.phone_check.summary()}")
    lines.append(f"  metrics: {config.json}\n  video: {metrics.video}\n  plot: {metrics.plot}")
    print("\n".join(lines))


def _run_export(config) -> None:
    from avatar.export.export import export_avatar

    manifest = export_avatar(config)
    print(
        f"exported {manifest.gaussians} Gaussians: {config.out / manifest.canonical}"
        + (f" and {len(manifest.frames)} driven frames in {config.out / 'frames'}" if manifest.frames else "")
        + f"\n  cameras and conventions: {config.out / 'export.json'}"
    )


def _run_view(config) -> None:
    from viewers.app import run_view

    run_view(config)


def main(argv: list[str] | None = None) -> int:
    from avatar.drive.video import RenderConfig
    from avatar.eval.evaluate import EvalConfig
    from avatar.export.export import ExportConfig
    from avatar.runs.settings import FitConfig
    from capture.config import CaptureConfig
    from viewers.config import ViewConfig

    command = tyro.extras.subcommand_cli_from_dict(
        {
            "capture": CaptureConfig,
            "fit": FitConfig,
            "render": RenderConfig,
            "eval": EvalConfig,
            "export": ExportConfig,
            "view": ViewConfig,
            "sample": SampleCommand,
            "demo": DemoCommand,
        },
        prog="avatar",
        description="splat-avatar: audio-driven 3D Gaussian talking heads from a phone video.",
        args=argv,
    )
    runners = {
        CaptureConfig: _run_capture,
        FitConfig: _run_fit,
        RenderConfig: _run_render,
        EvalConfig: _run_eval,
        ExportConfig: _run_export,
        ViewConfig: _run_view,
        SampleCommand: _run_sample,
        DemoCommand: _run_demo,
    }
    try:
        runners[type(command)](command)
    except AvatarError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: nothing half-written was kept; run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
