"""`avatar eval`: held-out frames rendered from their own audio and pose, measured against the real ones."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro
from tqdm.auto import tqdm

from avatar.atomic import write_json
from avatar.audio_sync import shift_frames
from avatar.composite import head_over, to_uint8, torso_over_background
from avatar.drive import load_fitted
from avatar.image_metrics import psnr_from_mse, ssim
from avatar.landmark_metrics import MouthMetrics
from avatar.media.video_writer import VideoWriter
from avatar.model.talking_head import frame_conditions
from avatar.plots import line_plot_png, side_by_side
from capture.face_regions import mouth_region


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
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to render."""
    backend: Literal["auto", "torch", "cuda", "gsplat"] = "auto"
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


def evaluate(config: EvalConfig) -> dict:
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    dataset, driver, window = fitted.dataset, fitted.driver, fitted.window
    tracking = dataset.tracking
    held_out = dataset.split["val"]
    if len(held_out) == 0:
        raise ValueError("the dataset holds out no frames")
    # the held-out frames' own audio, lined up with their mouths as in training
    features = shift_frames(
        fitted.driving_features(dataset.audio_features()), fitted.run["audio_offset_frames"]
    )
    signals = (features, tracking.eye_openness, tracking.rotations, tracking.translations)
    viewmats = torch.from_numpy(tracking.viewmats).float()
    background = dataset.background()
    video_path = config.video or Path(config.run) / "eval_side_by_side.mp4"
    plot_path = config.plot or Path(config.run) / "eval_mouth_opening.png"
    sums = {name: [0.0, 0.0] for name in ("frame", "head", "mouth")}
    ssim_frame, ssim_head = [], []
    render_seconds = 0.0
    box = (slice(window.y0, window.y0 + window.side), slice(window.x0, window.x0 + window.side))
    size = dataset.size
    with MouthMetrics() as mouth, VideoWriter(video_path, int(round(dataset.fps)), 2 * size, size) as video:
        for index in tqdm(held_out, desc="eval", unit="frame", disable=not config.progress, leave=False):
            index = int(index)
            conditions = frame_conditions(*signals, [index], window=driver.model.window, device=driver.device)
            start = time.perf_counter()
            head = driver.render(conditions, viewmats[index : index + 1])[0]
            if driver.device.type == "cuda":
                torch.cuda.synchronize()
            render_seconds += time.perf_counter() - start
            real = dataset.frame(index)
            base = torso_over_background(real, dataset.masks(index), background)
            rendered = head_over(base, head.rgb.cpu().numpy(), head.alpha.cpu().numpy(), window)
            real_float = real.astype(np.float32) / 255
            mouth_mask = (mouth_region(tracking.landmarks[index], size) > 127).astype(np.float32)
            for name, mask in (("frame", None), ("mouth", mouth_mask)):
                error, count = _squared_error(rendered, real_float, mask)
                sums[name][0] += error
                sums[name][1] += count
            error, count = _squared_error(rendered[box], real_float[box])
            sums["head"][0] += error
            sums["head"][1] += count
            ssim_frame.append(_ssim(rendered, real_float))
            ssim_head.append(_ssim(rendered[box], real_float[box]))
            rendered_u8 = to_uint8(rendered)
            mouth.add(real, rendered_u8)
            video.write(side_by_side(real, rendered_u8))
        lips = mouth.result()
    line_plot_png(
        plot_path,
        {"real": lips["mouth_open_real"], "rendered": lips["mouth_open_rendered"]},
        x=held_out / dataset.fps,
        title="mouth opening on the held-out frames",
        xlabel="time (s)",
        ylabel="inner-lip gap / mouth width",
    )

    def _psnr(name: str) -> float:
        error, count = sums[name]
        return psnr_from_mse(error / max(count, 1.0))

    metrics = {
        "frames": len(held_out),
        "psnr": _psnr("frame"),
        "ssim": float(np.mean(ssim_frame)),
        "psnr_head_box": _psnr("head"),
        "ssim_head_box": float(np.mean(ssim_head)),
        "psnr_mouth": _psnr("mouth"),
        "lmd_px": lips["lmd_px"],
        "mouth_open_correlation": lips["mouth_open_correlation"],
        "frames_without_face": lips["frames_without_face"],
        "render_fps": len(held_out) / render_seconds if render_seconds > 0 else math.nan,
        "render_resolution": driver.resolution,
        "device": str(driver.device),
        "checkpoint_step": fitted.step,
        "video": str(video_path),
        "plot": str(plot_path),
        "mouth_open_real": [None if math.isnan(v) else round(v, 5) for v in lips["mouth_open_real"]],
        "mouth_open_rendered": [None if math.isnan(v) else round(v, 5) for v in lips["mouth_open_rendered"]],
    }
    write_json(config.json, metrics)
    return metrics
