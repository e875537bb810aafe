"""The torso's fit: after the head's, its Gaussians learn the capture's neck, shoulders and chest.

Only the torso learns: its Gaussians and the network that moves it with the head's pose. The fitted head is
frozen, so each training frame's head (driven by its tracked mouth motion) is rendered once, the first time the
frame is drawn, as a layer of colour, alpha and depth (`Layer`); every step renders only the torso as another
layer and lays the two over the background plate, the nearer in front at each pixel (`layered`), at
`TrainSettings.torso_resolution`. The loss is the L1 error against the real frame plus `alpha_weight` times the
alpha's error against the capture's person mask.

A render draws head and torso in one pass (`avatar.model.torso.bust_gaussians`); the two layers are the same
image wherever head and torso do not interleave in depth within a pixel. Not rendering the frozen head's
Gaussians at every step makes a step about 5x cheaper on the CPU, so the tiny preset takes 1200 torso steps on
100 frames where one-pass steps took 300 on 200 (`avatar fit --resume` of the torso alone on the Obama clip:
127 s against 117 s). Held-out PSNR (17 frames), one-pass 300 steps -> layered 1200 steps:

| clip | torso | neck band | head box |
| --- | --- | --- | --- |
| obama_address_20s | 21.62 -> 22.94 | 26.87 -> 27.27 | 28.71 -> 29.29 |
| phone_talker_20s | 22.78 -> 22.51 | 22.40 -> 23.66 | 24.27 -> 24.49 |

The fit is not checkpointed: a fit killed during it makes the torso again on `--resume`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from avatar.core.backends import RasterizerName
from avatar.core.pinhole import resampled_intrinsics
from avatar.data.avatar_frame import avatar_pose
from avatar.data.dataset import Dataset
from avatar.model.deformation import FrameConditions
from avatar.model.gaussians import GaussianSet
from avatar.model.rigid import transform_gaussians
from avatar.model.talking_head import ClipSignals, TalkingHead
from avatar.model.torso import TorsoModel
from avatar.model.torso_init import init_torso
from avatar.render.rasterize import render_gaussians
from avatar.runs.settings import TrainSettings
from avatar.train import losses
from avatar.train.state import gaussian_groups

CHIN = 152  # the face-mesh landmark at the chin
REFERENCE_CANDIDATES = 12  # training frames whose torso masks are compared for the initial torso
MAX_TARGETS = 100  # training frames the torso fits to, spread over the clip
EMPTY_ALPHA = 1e-4  # a layer's pixels with less alpha have no depth


def torso_resolution(settings: TrainSettings, size: int) -> int:
    return size if settings.torso_resolution is None else min(size, settings.torso_resolution)


def _reference_frame(dataset: Dataset, frames: np.ndarray) -> int:
    """The frame among a spread of `frames` whose torso mask is largest."""
    picks = frames[
        np.linspace(0, len(frames) - 1, min(REFERENCE_CANDIDATES, len(frames))).round().astype(int)
    ]
    areas = [(dataset.masks(int(index))[..., 2] > 127).sum() for index in picks]
    return int(picks[int(np.argmax(areas))])


@dataclass(frozen=True)
class Layer:
    """Gaussians rendered alone: colour premultiplied by alpha, alpha, and their mean depth at each pixel."""

    rgb: torch.Tensor  # [R, R, 3]
    alpha: torch.Tensor  # [R, R, 1]
    depth: torch.Tensor  # [R, R, 1] camera z, metres, weighted by each Gaussian's share; +inf where empty

    @staticmethod
    def render(
        gaussians: GaussianSet,
        viewmat: torch.Tensor,
        K: torch.Tensor,
        resolution: int,
        backend: RasterizerName,
    ) -> Layer:
        """`gaussians` (avatar frame) seen by the camera `viewmat` [4, 4], `K` [3, 3]."""
        out = render_gaussians(gaussians, viewmat, K, resolution, None, backend=backend)
        seen = out.alpha.detach() > EMPTY_ALPHA
        depth = torch.where(seen, out.depth.detach() / out.alpha.detach().clamp_min(EMPTY_ALPHA), math.inf)
        return Layer(out.rgb, out.alpha, depth)


def layered(first: Layer, second: Layer, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two layers over `background` [R, R, 3], at each pixel the nearer in front -> colour [R, R, 3] and alpha
    [R, R, 1]: the one-pass render of both sets where they do not interleave in depth within a pixel."""
    first_in_front = first.depth <= second.depth
    front_rgb, back_rgb = (
        torch.where(first_in_front, first.rgb, second.rgb),
        torch.where(first_in_front, second.rgb, first.rgb),
    )
    front_alpha = torch.where(first_in_front, first.alpha, second.alpha)
    back_alpha = torch.where(first_in_front, second.alpha, first.alpha)
    rgb = front_rgb + (1 - front_alpha) * (back_rgb + (1 - back_alpha) * background)
    return rgb, front_alpha + (1 - front_alpha) * back_alpha


def fit_torso(
    model: TalkingHead,
    dataset: Dataset,
    signals: ClipSignals,
    motion_targets: torch.Tensor,  # [F, J, 3] the tracked mouth motion of every frame
    settings: TrainSettings,
    backend: RasterizerName,
    *,
    seed: int = 0,
    progress: bool = True,
) -> TorsoModel:
    """A torso fitted to the dataset's training frames under the fitted `model` (module docstring)."""
    device = model.gaussians.means.device
    tracking, size = dataset.tracking, dataset.size
    train = dataset.split.train[tracking.valid[dataset.split.train]]
    pose = avatar_pose(tracking, train)
    reference = _reference_frame(dataset, train)
    torso = init_torso(
        dataset.frame(reference),
        dataset.masks(reference)[..., 2],
        tracking.intrinsics,
        pose,
        tracking.canonical_landmarks[CHIN],
        settings.torso_gaussians,
        seed=seed,
    ).to(device)
    resolution = torso_resolution(settings, size)
    K = torch.from_numpy(resampled_intrinsics(tracking.intrinsics, size, resolution)).float().to(device)
    plate = _resized(dataset.background(), resolution, device)
    viewmat = torch.from_numpy(pose).float().to(device)
    targets = train[np.linspace(0, len(train) - 1, min(MAX_TARGETS, len(train))).round().astype(int)]
    head_poses = torch.from_numpy(np.linalg.inv(pose)[None] @ tracking.viewmats[targets]).float().to(device)
    images, people = {}, {}
    heads: dict[int, Layer] = {}
    optimizer = _optimizer(torso, settings)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(settings.steps_torso), desc="fit: torso", disable=not progress, leave=False):
        row = int(rng.integers(len(targets)))
        index = int(targets[row])
        if index not in heads:
            head = transform_gaussians(
                _head(model, signals, motion_targets, index, device),
                head_poses[row, :3, :3],
                head_poses[row, :3, 3],
            )
            with torch.no_grad():
                heads[index] = Layer.render(head, viewmat, K, resolution, backend)
            images[index] = _resized(dataset.frame(index), resolution, device)
            people[index] = _resized(dataset.masks(index)[..., 0], resolution, device)[..., None]
        body = Layer.render(torso(head_poses[row]), viewmat, K, resolution, backend)
        rgb, alpha = layered(heads[index], body, plate)
        loss = losses.l1_loss(losses.absolute_error(rgb, images[index]))
        loss = loss + settings.alpha_weight * losses.alpha_loss(alpha, people[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return torso.eval()


@torch.no_grad()
def _head(
    model: TalkingHead, signals: ClipSignals, motion_targets: torch.Tensor, index: int, device: torch.device
) -> GaussianSet:
    """Frame `index`'s head Gaussians (head frame), its mouth as tracked."""
    conditions = signals.conditions([index], window=model.window, device=device)
    tracked = FrameConditions(conditions.audio, conditions.eye, conditions.view, motion_targets[index][None])
    head = model(tracked)[0][0]
    return GaussianSet(*(value.detach() for value in vars(head).values()))


def _resized(image: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """[S, S, ...] uint8 -> [R, R, ...] float32 in [0, 1] on `device`."""
    resized = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(resized.astype(np.float32) / 255).to(device)


def _optimizer(torso: TorsoModel, settings: TrainSettings) -> torch.optim.Adam:
    groups = gaussian_groups(torso.gaussians, settings)
    groups.append(
        {"name": "body_motion", "params": list(torso.body_motion.parameters()), "lr": settings.lr_deformation}
    )
    return torch.optim.Adam(groups, eps=1e-15)
