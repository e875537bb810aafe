"""Training targets: every training frame's head window, loaded once at the training resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from avatar.data.dataset import Dataset
from avatar.data.head_window import HeadWindow
from avatar.face.regions import mouth_region


@dataclass
class TargetFrame:
    """One frame's targets on the device, [R, R, ...] at the training resolution R."""

    index: int  # dataset frame index
    image: torch.Tensor  # [R, R, 3] in [0, 1]: the head over the background plate
    head: torch.Tensor  # [R, R, 1] in {0, 1}
    mouth: torch.Tensor  # [R, R, 1] in {0, 1}: lips and the region around them
    viewmat: torch.Tensor  # [4, 4] head -> camera


class TrainingFrames:
    """Head windows of a set of frames, stored as uint8 on the CPU and moved to the device one at a time.

    The target image is the frame inside the head mask and the background plate outside it, so that a head
    rendered over the plate can match it exactly."""

    def __init__(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        window: HeadWindow,
        resolution: int,
        *,
        progress: bool = True,
    ):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.resolution = resolution
        count = len(self.indices)
        self.images = np.zeros((count, resolution, resolution, 3), np.uint8)
        self.heads = np.zeros((count, resolution, resolution), np.uint8)
        self.mouths = np.zeros((count, resolution, resolution), np.uint8)
        background = window.cut(dataset.background(), resolution)
        landmarks = dataset.tracking.landmarks
        iterator = tqdm(
            enumerate(self.indices), total=count, desc="fit: load frames", leave=False, disable=not progress
        )
        for row, index in iterator:
            frame = window.cut(dataset.frame(int(index)), resolution)
            head = window.cut(dataset.masks(int(index))[..., 1], resolution, interpolation=1) > 127
            self.images[row] = np.where(head[..., None], frame, background)
            self.heads[row] = head
            self.mouths[row] = window.cut(mouth_region(landmarks[index], dataset.size), resolution, 1) > 127
        self.background = torch.from_numpy(background.astype(np.float32) / 255)
        self.viewmats = torch.from_numpy(dataset.tracking.viewmats[self.indices]).float()

    def __len__(self) -> int:
        return len(self.indices)

    def target(self, row: int, device: torch.device) -> TargetFrame:
        return TargetFrame(
            index=int(self.indices[row]),
            image=torch.from_numpy(self.images[row]).to(device).float() / 255,
            head=torch.from_numpy(self.heads[row]).to(device).float()[..., None],
            mouth=torch.from_numpy(self.mouths[row]).to(device).float()[..., None],
            viewmat=self.viewmats[row].to(device),
        )
