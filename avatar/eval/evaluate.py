"""`avatar eval`: held-out frames rendered from their own audio and pose, measured against the real ones."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
import tyro
from tqdm.auto import tqdm

from avatar.core.atomic import check_writable
from avatar.core.backends import DeviceName, RasterizerName
from avatar.core.errors import AvatarError
from avatar.core.records import Record
from avatar.drive.compositor import to_uint8
from avatar.drive.driver import load_fitted
from avatar.eval.plots import line_plot_png, side_by_side
from avatar.face.regions import mouth_region
from avatar.media.video_writer import VideoWriter
from avatar.metrics.image import psnr_from_mse, ssim
from avatar.metrics.landmarks import MouthMetrics
from avatar.runs.run_dir import RunLayout


@dataclass
class EvalConfig:
    """Measure a fitted head on the held-out frames of its dataset."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """An `avatar fit` output directory."""
    json: Path
    """Where to write the metrics."""
    video: Path | None = None
    """Side-by-side video (real | rendered); default: RUN/eval_side_by_side.mp4."""
    plot: Path | None = None
    """Mouth opening over time, real vs rendered; default: RUN/eval_mouth_opening.png."""
    dataset: Path | None = None
    """The dataset the run was fitted to, if it has moved."""
    device: DeviceName = "auto"
    """Where to render."""
    backend: RasterizerName = "auto"
    """Rasterizer implementation."""
    progress: bool = True
    """Show a progress bar."""


def _squared_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """-> (sum of squared errors, number of values) of two float images, over a mask when given."""
    diff = (a - b) ** 2
    if mask is None:
        return float(diff.sum()), float(diff.size)
    return float((diff * mask[..., None]).sum()), float(mask.sum() * diff.shape[-1])


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim(torch.from_numpy(a), torch.from_numpy(b)))


@dataclass(frozen=True)
class EvalMetrics(Record):
    """`avatar eval`'s measurements on the held-out frames (written to --json)."""

    FORMAT: ClassVar[str] = "splat-avatar-eval"
    VERSION: ClassVar[int] = 1

    frames: int
    psnr: float  # dB, whole composited frame
    ssim: float
    psnr_head_box: float  # dB, the head window
    ssim_head_box: float
    psnr_mouth: float  # dB, the mouth region
    lmd_px: float  # lip landmark distance (avatar.metrics.landmarks)
    mouth_open_correlation: float  # Pearson r of the real and rendered mouth opening
    frames_without_face: int  # rendered frames the face mesh finds no face in
    render_fps: float
    render_resolution: int
    device: str
    checkpoint_step: int
    video: Path
    plot: Path
    mouth_open_real: tuple[float | None, ...]  # per held-out frame; None where no face was found
    mouth_open_rendered: tuple[float | None, ...]


def _series(values: np.ndarray) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(v) else round(float(v), 5) for v in values)


class _ErrorSums:
    """Squared errors and value counts, summed over frames, per region."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, rendered: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> None:
        error, count = _squared_error(rendered, real, mask)
        entry = self.sums.setdefault(name, [0.0, 0.0])
        entry[0] += error
        entry[1] += count

    def psnr(self, name: str) -> float:
        error, count = self.sums[name]
        return psnr_from_mse(error / max(count, 1.0))


def evaluate(config: EvalConfig) -> EvalMetrics:
    check_writable(config.json, flag="--json")
    layout = RunLayout(Path(config.run))
    video_path = config.video or layout.eval_video
    plot_path = config.plot or layout.eval_plot
    check_writable(video_path, flag="--video")
    check_writable(plot_path, flag="--plot")
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    dataset, driver, window = fitted.dataset, fitted.driver, fitted.window
    tracking = dataset.tracking
    held_out = dataset.split.val
    if len(held_out) == 0:
        raise AvatarError("the dataset holds out no frames", path=dataset.root, fix="Capture a longer video")
    signals = fitted.capture_signals()  # the held-out frames' own audio, lined up with their mouths
    viewmats = torch.from_numpy(tracking.viewmats).float()
    background = dataset.background()
    errors = _ErrorSums()
    ssim_frame, ssim_head = [], []
    render_seconds = 0.0
    box = (slice(window.y0, window.y0 + window.side), slice(window.x0, window.x0 + window.side))
    size = dataset.size
    with MouthMetrics() as mouth, VideoWriter(video_path, int(round(dataset.fps)), 2 * size, size) as video:
        for index in tqdm(held_out, desc="eval", unit="frame", disable=not config.progress, leave=False):
            index = int(index)
            conditions = signals.conditions([index], window=driver.model.window, device=driver.device)
            start = time.perf_counter()
            head = driver.render(conditions, viewmats[index : index + 1])[0]
            if driver.device.type == "cuda":
                torch.cuda.synchronize()
            render_seconds += time.perf_counter() - start
            real = dataset.frame(index)
            rendered = fitted.composite(head, index, background)
            real_float = real.astype(np.float32) / 255
            mouth_mask = (mouth_region(tracking.landmarks[index], size) > 127).astype(np.float32)
            errors.add("frame", rendered, real_float)
            errors.add("mouth", rendered, real_float, mouth_mask)
            errors.add("head", rendered[box], real_float[box])
            ssim_frame.append(_ssim(rendered, real_float))
            ssim_head.append(_ssim(rendered[box], real_float[box]))
            rendered_u8 = to_uint8(rendered)
            mouth.add(real, rendered_u8)
            video.write(side_by_side(real, rendered_u8))
        lips = mouth.result()
    line_plot_png(
        plot_path,
        {"real": lips.mouth_open_real, "rendered": lips.mouth_open_rendered},
        x=held_out / dataset.fps,
        title="mouth opening on the held-out frames",
        xlabel="time (s)",
        ylabel="inner-lip gap / mouth width",
    )
    metrics = EvalMetrics(
        frames=len(held_out),
        psnr=errors.psnr("frame"),
        ssim=float(np.mean(ssim_frame)),
        psnr_head_box=errors.psnr("head"),
        ssim_head_box=float(np.mean(ssim_head)),
        psnr_mouth=errors.psnr("mouth"),
        lmd_px=lips.lmd_px,
        mouth_open_correlation=lips.mouth_open_correlation,
        frames_without_face=lips.frames_without_face,
        render_fps=len(held_out) / render_seconds if render_seconds > 0 else math.nan,
        render_resolution=driver.resolution,
        device=str(driver.device),
        checkpoint_step=fitted.step,
        video=video_path,
        plot=plot_path,
        mouth_open_real=_series(lips.mouth_open_real),
        mouth_open_rendered=_series(lips.mouth_open_rendered),
    )
    metrics.write(config.json)
    return metrics
