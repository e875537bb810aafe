"""Driving a fitted head: frame conditions in, the head window rendered out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avatar.audio_normalization import AudioNormalization, normalize_audio_windows
from avatar.dataset import Dataset
from avatar.errors import AvatarError
from avatar.head_window import HeadWindow
from avatar.model.deformation import FrameConditions
from avatar.model.gaussians import GaussianSet
from avatar.model.talking_head import TalkingHead
from avatar.render import RenderOutput, rasterize


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AvatarError("--device cuda was asked for, but torch sees no CUDA GPU", fix="Use --device cpu")
    return torch.device(name)


def render_gaussians(
    gaussians: GaussianSet,
    viewmat: Tensor,  # [4, 4] head -> camera
    K: Tensor,  # [3, 3]
    resolution: int,
    background: Tensor | None = None,  # [R, R, 3] or [3]
    *,
    colors: Tensor | None = None,  # [N, C] splatted instead of the Gaussians' colours
    backend: str = "torch",
) -> RenderOutput:
    return rasterize(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        gaussians.colors if colors is None else colors,
        viewmat,
        K,
        resolution,
        resolution,
        background=background,
        backend=backend,
    )


@dataclass
class DrivenFrame:
    rgb: Tensor  # [R, R, 3] over the given background
    alpha: Tensor  # [R, R, 1]
    attention: Tensor | None  # [R, R, 4] rendered attention over (audio, eye, view, null), when asked for


class HeadDriver:
    """Renders the head window of a fitted model for given conditions and poses (no gradients)."""

    def __init__(self, model: TalkingHead, K_window: np.ndarray, resolution: int, backend: str = "torch"):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.K = torch.as_tensor(K_window, dtype=torch.float32, device=self.device)
        self.resolution = resolution
        self.backend = backend

    @torch.no_grad()
    def render(
        self,
        conditions: FrameConditions,
        viewmats: Tensor,  # [B, 4, 4]
        background: Tensor | None = None,
        *,
        with_attention: bool = False,
    ) -> list[DrivenFrame]:
        sets, attention = self.model(conditions.to(self.device), deform=True)
        frames = []
        for b, gaussians in enumerate(sets):
            viewmat = viewmats[b].to(self.device, torch.float32)
            out = render_gaussians(
                gaussians, viewmat, self.K, self.resolution, background, backend=self.backend
            )
            attention_image = None
            if with_attention and attention is not None:
                weights = attention[b].mean(dim=1)  # [N, 4] averaged over heads
                attention_image = render_gaussians(
                    gaussians, viewmat, self.K, self.resolution, colors=weights, backend=self.backend
                ).rgb
            frames.append(DrivenFrame(out.rgb, out.alpha, attention_image))
        return frames


@dataclass
class FittedHead:
    """A fitted run, ready to drive: its model, the dataset it was fitted to and its head window."""

    driver: HeadDriver
    run: dict
    step: int
    dataset: Dataset
    window: HeadWindow

    def driving_features(self, windows: np.ndarray) -> np.ndarray:
        """A clip's log-mel windows [F, steps, n_mels] -> the model's inputs, normalised as in training."""
        return normalize_audio_windows(windows, AudioNormalization.from_dict(self.run["audio_normalization"]))


def load_fitted(
    run_dir: Path, *, device: str = "auto", backend: str = "auto", dataset: Path | None = None
) -> FittedHead:
    """Opens `run_dir` (an `avatar fit` output) and the dataset it was fitted to (or `dataset`, if it moved)."""
    from avatar.train.trainer import load_model

    torch_device = choose_device(device)
    model, run, step = load_model(run_dir, torch_device)
    dataset_path = Path(dataset) if dataset is not None else Path(run["dataset"])
    if not dataset_path.is_dir():
        raise AvatarError(
            "the dataset this run was fitted to is not there any more",
            path=dataset_path,
            fix="Pass its new location with --dataset",
        )
    opened = Dataset(dataset_path)
    if opened.manifest["source"] != run["dataset_source"]:
        raise AvatarError(
            "this dataset was captured from a different video than the run was fitted to",
            path=dataset_path,
            fix="Pass the dataset the run was fitted to",
        )
    driver = HeadDriver(model, np.asarray(run["intrinsics_window"]), int(run["resolution"]), backend)
    return FittedHead(driver, run, step, opened, HeadWindow.from_dict(run["window"]))
