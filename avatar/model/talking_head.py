"""The talking head: canonical Gaussians deformed per frame by audio, eye openness and viewpoint.

A checkpoint is `config_dict()` (JSON) plus `state_dict()` (tensors only, e.g. saved with safetensors):
`TalkingHead.from_config(config_dict)` rebuilds a module with the stored sizes and Gaussian count, into which
`load_state_dict` then loads the tensors (the deformation's bounding box is a buffer, so it is restored too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from avatar.core.errors import AvatarError
from avatar.model.deformation import (
    DeformationConfig,
    DeformationField,
    FrameConditions,
    apply_deltas,
    padded_bounds,
)
from avatar.model.gaussians import CanonicalGaussians, GaussianSet
from avatar.model.landmark_motion import EyelidRig

CONFIG_VERSION = 5


class TalkingHead(nn.Module):
    """`CanonicalGaussians` + `DeformationField`.

    Args:
        gaussians: the canonical Gaussians (e.g. from `avatar.model.head_init.init_head_gaussians`)
        config: the deformation field's sizes
        mouth_anchors: [J, 3] the `MOUTH_AND_JAW` landmarks of the canonical face (`DeformationField`); default zeros,
            e.g. for a module whose state dict is loaded next
        eyelids: how the lids move with the eye openness (`avatar.model.landmark_motion.eyelid_rig`); default
            lids that never move, e.g. for a module whose state dict is loaded next
        audio_enabled: False zeroes the audio token (the no-audio ablation)
        bounds: the deformation's hash-grid box ([3], [3]); default `padded_bounds` of the Gaussians' means
        hash_grid_backend: "auto", "torch", "cuda" or "tcnn" (see `avatar.model.encoding.select.make_hash_grid`; "auto":
            tiny-cuda-nn when built on a CUDA device with tinycudann installed, else this project's CUDA kernel
            when it builds there, else the PyTorch grid)
        device: where to build the module (the Gaussians are moved there); default the Gaussians' device.
            Build on the training device rather than moving the module later, so "auto" can pick tiny-cuda-nn.
    """

    def __init__(
        self,
        gaussians: CanonicalGaussians,
        config: DeformationConfig,
        *,
        mouth_anchors: Tensor | None = None,
        eyelids: EyelidRig | None = None,
        audio_enabled: bool = True,
        bounds: tuple[Tensor, Tensor] | None = None,
        hash_grid_backend: str = "auto",
        device: torch.device | str | None = None,
    ):
        super().__init__()
        if device is not None:
            gaussians = gaussians.to(device)
        device = gaussians.means.device
        if bounds is None:
            bounds = padded_bounds(gaussians.means)
        self.gaussians = gaussians
        self.deformation = DeformationField(
            config,
            bounds[0],
            bounds[1],
            mouth_anchors=mouth_anchors,
            eyelids=eyelids,
            audio_enabled=audio_enabled,
            hash_grid_backend=hash_grid_backend,
            device=device,
        )

    @property
    def config(self) -> DeformationConfig:
        return self.deformation.config

    @property
    def window(self) -> int:
        return self.deformation.config.window

    def forward(
        self, conditions: FrameConditions | None, *, deform: bool = True, mouth_scale: float = 1.0
    ) -> tuple[list[GaussianSet], Tensor | None]:
        """The Gaussians of each frame of the batch, in head coordinates.

        Args:
            conditions: batch of B frames; may be None when `deform` is False (then one canonical set)
            deform: False returns the canonical Gaussians for every frame (e.g. a warm-up phase)
            mouth_scale: how much of the articulation to keep: the mouth motion rendered is that of the same
                frame hearing silence plus `mouth_scale` times the audio's change from it (1: as fitted; 0.5:
                half the articulation; 1.5: more). A mouth closed on silence stays closed at any scale.
        Returns:
            gaussians: B GaussianSets of N Gaussians each
            attention: Tensor  # [B, N, heads, 4] over (articulation, eye, view, null), or None when not deforming
        """
        canonical = self.gaussians.activated()
        if not deform:
            copies = 1 if conditions is None else conditions.batch_size
            return [canonical] * copies, None
        if conditions is None:
            raise ValueError("deforming needs frame conditions")
        if mouth_scale != 1.0:
            field = self.deformation
            rest = field.articulation(
                replace(conditions, audio=torch.zeros_like(conditions.audio), motion=None)
            )
            motion = field.articulation(conditions)
            conditions = replace(conditions, motion=rest + mouth_scale * (motion - rest))
        deltas, attention = self.deformation(self.gaussians.means, conditions)
        return [apply_deltas(canonical, deltas, b) for b in range(deltas.batch_size)], attention

    def config_dict(self) -> dict:
        """JSON-able description of the module's sizes; `from_config` rebuilds an (untrained) module from it."""
        return {
            "version": CONFIG_VERSION,
            "num_gaussians": self.gaussians.num,
            "audio_enabled": self.deformation.audio_enabled,
            "deformation": self.config.to_dict(),
        }

    @staticmethod
    def from_config(
        config: dict, *, hash_grid_backend: str = "auto", device: torch.device | str | None = None
    ) -> TalkingHead:
        """A module shaped as `config` describes, ready for `load_state_dict`."""
        if config.get("version") != CONFIG_VERSION:
            raise AvatarError(
                f"the checkpoint's model config has version {config.get('version')}, "
                f"this splat-avatar reads version {CONFIG_VERSION}",
                fix="Re-run `avatar fit` with this version of splat-avatar",
            )
        placeholder = (torch.zeros(3), torch.ones(3))  # the bounds are buffers: the state dict replaces them
        return TalkingHead(
            CanonicalGaussians.empty(int(config["num_gaussians"]), device=device),
            DeformationConfig.from_dict(config["deformation"]),
            audio_enabled=bool(config["audio_enabled"]),
            bounds=placeholder,
            hash_grid_backend=hash_grid_backend,
            device=device,
        )


@dataclass(frozen=True)
class ClipSignals:
    """What drives every frame of a clip of F frames; numpy or torch arrays."""

    audio: np.ndarray | Tensor  # [F, 16, 80] one normalised log-mel window per video frame
    eye: np.ndarray | Tensor  # [F] eye openness
    rotations: np.ndarray | Tensor  # [F, 3, 3] head -> camera
    translations: np.ndarray | Tensor  # [F, 3]
    motion: np.ndarray | Tensor | None = None  # [F, J, 3] mouth motion to render; None: predicted per frame

    def conditions(
        self,
        frame_indices: Sequence[int] | np.ndarray | Tensor,
        *,
        window: int,
        device: torch.device | str | None = None,
    ) -> FrameConditions:
        """`frame_conditions` of these frames."""
        return frame_conditions(
            self.audio,
            self.eye,
            self.rotations,
            self.translations,
            frame_indices,
            window=window,
            device=device,
            motion=self.motion,
        )


def frame_conditions(
    audio_features: np.ndarray | Tensor,  # [F, 16, 80] one log-mel window per video frame
    eye_openness: np.ndarray | Tensor,  # [F]
    rotations: np.ndarray | Tensor,  # [F, 3, 3] head -> camera
    translations: np.ndarray | Tensor,  # [F, 3] X_cam = R X_head + t
    frame_indices: Sequence[int] | np.ndarray | Tensor,  # [B]
    *,
    window: int,
    device: torch.device | str | None = None,
    motion: np.ndarray | Tensor | None = None,  # [F, J, 3] mouth motion to render, if not the audio's
) -> FrameConditions:
    """The conditions of frames `frame_indices` of a clip of F frames.

    audio: the windows of frames i - W//2 .. i + W//2, indices clamped to [0, F - 1] (the first and last
    frames repeat at the clip's ends); eye: eye openness; view: the camera centre in head coordinates,
    -R^T t, normalised; motion: the frames' rows of `motion`, when given. Arrays may be numpy or torch; the
    result is float32 on `device`.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of frames, got {window}")
    num_frames = audio_features.shape[0]
    if isinstance(frame_indices, Tensor):
        frame_indices = frame_indices.detach().cpu().numpy()
    indices = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
        raise IndexError(f"frame indices must be in [0, {num_frames}), got {indices.tolist()}")
    offsets = np.arange(window) - window // 2
    neighbours = np.clip(indices[:, None] + offsets, 0, num_frames - 1)  # [B, W]
    R = _rows(rotations, indices, device)  # [B, 3, 3]
    t = _rows(translations, indices, device)  # [B, 3]
    camera_centre = -torch.einsum("bji,bj->bi", R, t)  # -R^T t
    return FrameConditions(
        audio=_rows(audio_features, neighbours, device),
        eye=_rows(eye_openness, indices, device),
        view=torch.nn.functional.normalize(camera_centre, dim=-1),
        motion=None if motion is None else _rows(motion, indices, device),
    )


def _rows(values: np.ndarray | Tensor, indices: np.ndarray, device: torch.device | str | None) -> Tensor:
    """values[indices] as float32 on `device` (only the selected rows are converted and moved)."""
    if isinstance(values, Tensor):
        selected = values[torch.from_numpy(indices).to(values.device)]
    else:
        selected = torch.from_numpy(np.ascontiguousarray(np.asarray(values)[indices]))
    return selected.to(device=device, dtype=torch.float32)
