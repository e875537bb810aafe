"""The torso's fit: after the head's, its Gaussians learn the capture's neck, shoulders and chest.

Every step renders a training frame's whole bust in one pass (`avatar.model.torso.bust_gaussians`): the fitted
head, frozen and driven by its tracked mouth motion, and the torso, over the background plate, at
`TrainSettings.torso_resolution`; the loss is the L1 error against the real frame plus `alpha_weight` times the
alpha's error against the capture's person mask. Only the torso learns: its Gaussians and the network that moves
it with the head's pose. The head's Gaussians of each frame are computed once and kept. The fit takes a couple of
minutes of the tiny preset and is not checkpointed: a fit killed during it makes the torso again on `--resume`.
"""

from __future__ import annotations

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
from avatar.model.talking_head import ClipSignals, TalkingHead
from avatar.model.torso import TorsoModel, bust_gaussians
from avatar.model.torso_init import init_torso
from avatar.render.rasterize import render_gaussians
from avatar.runs.settings import TrainSettings
from avatar.train import losses
from avatar.train.state import gaussian_groups

CHIN = 152  # the face-mesh landmark at the chin
REFERENCE_CANDIDATES = 12  # training frames whose torso masks are compared for the initial torso
MAX_TARGETS = 200  # training frames the torso fits to, spread over the clip


def torso_resolution(settings: TrainSettings, size: int) -> int:
    return size if settings.torso_resolution is None else min(size, settings.torso_resolution)


def _reference_frame(dataset: Dataset, frames: np.ndarray) -> int:
    """The frame among a spread of `frames` whose torso mask is largest."""
    picks = frames[
        np.linspace(0, len(frames) - 1, min(REFERENCE_CANDIDATES, len(frames))).round().astype(int)
    ]
    areas = [(dataset.masks(int(index))[..., 2] > 127).sum() for index in picks]
    return int(picks[int(np.argmax(areas))])


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
    heads: dict[int, GaussianSet] = {}
    optimizer = _optimizer(torso, settings)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(settings.steps_torso), desc="fit: torso", disable=not progress, leave=False):
        row = int(rng.integers(len(targets)))
        index = int(targets[row])
        if index not in heads:
            heads[index] = _head(model, signals, motion_targets, index, device)
            images[index] = _resized(dataset.frame(index), resolution, device)
            people[index] = _resized(dataset.masks(index)[..., 0], resolution, device)[..., None]
        bust = bust_gaussians(heads[index], head_poses[row], torso(head_poses[row]))
        out = render_gaussians(bust, viewmat, K, resolution, plate, backend=backend)
        loss = losses.l1_loss(losses.absolute_error(out.rgb, images[index]))
        loss = loss + settings.alpha_weight * losses.alpha_loss(out.alpha, people[index])
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
