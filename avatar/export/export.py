"""`avatar export`: a fitted avatar as 3D Gaussian splatting PLY files, canonical and per driven frame.

    OUT/canonical.ply         the undeformed avatar
    OUT/frames/NNNNNN.ply     the avatar as frame NNNNNN of the driving clip deforms it (`--audio` or `--frames`)
    OUT/export.json           `ExportManifest`: the convention, the camera of each frame, the files

Coordinates: the avatar frame (`avatar.data.avatar_frame`: the head frame at the capture's mean head pose),
metres, axes as OpenCV's camera for a frontal face (x to the image's right, y down, z away from the camera; the
face looks towards -z). The canonical file is the head at rest at the origin with the torso around it; a driven
frame's head is moved to where that frame's head was, and each frame's `viewmat` [[R, t], [0, 1]] (`X_cam = R
X + t`) puts the capture's camera where it saw it. Viewers that take COLMAP-style scenes (the reference 3DGS
layout) read these axes as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
import tyro
from torch import Tensor
from tqdm.auto import tqdm

from avatar.core.atomic import check_writable
from avatar.core.backends import DeviceName
from avatar.core.errors import AvatarError
from avatar.core.records import Record
from avatar.drive.driver import FittedHead, load_fitted
from avatar.drive.video import drive_with_audio
from avatar.export.splat_ply import write_splat_ply
from avatar.model.deformation import FrameConditions
from avatar.model.gaussians import GaussianSet
from avatar.model.rigid import concatenate
from avatar.model.talking_head import ClipSignals

CONVENTION = "avatar frame, metres; x right, y down, z away from the camera (OpenCV); X_cam = R X + t"


@dataclass
class ExportConfig:
    """Write a fitted avatar as 3D Gaussian splatting PLY files: canonical, and one per driven frame."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """An `avatar fit` output directory."""
    out: Path
    """Directory to write canonical.ply, frames/*.ply and export.json into."""
    audio: Path | None = None
    """Driving audio: every frame it drives is exported (or those --frames picks)."""
    frames: str | None = None
    """Frames to export: START:STOP[:STEP] or a comma list (e.g. 0:100:10 or 3,40,77); of the --audio clip,
    or without --audio of the capture itself, driven by its own audio."""
    mouth_scale: float = 1.0
    """Scale the articulation, as `avatar render --mouth-scale`."""
    dataset: Path | None = None
    """The dataset the run was fitted to, if it has moved."""
    device: DeviceName = "auto"
    """Where to deform the Gaussians."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class ExportedFrame:
    index: int  # frame of the driving clip
    file: str  # relative to the export directory
    viewmat: list[list[float]]  # [4, 4] avatar frame -> the capture's camera at this frame


@dataclass(frozen=True)
class ExportManifest(Record):
    FORMAT: ClassVar[str] = "splat-avatar-export"
    VERSION: ClassVar[int] = 1

    convention: str
    gaussians: int  # in every file
    canonical: str  # file, relative to the export directory
    fps: float
    image_size: int  # S of the capture's S x S crop, which `intrinsics` is for
    intrinsics: list[list[float]]  # [3, 3] pinhole K of the capture's crop
    audio: Path | None  # the driving audio; None: the capture's own
    frames: list[ExportedFrame]


def parse_frames(text: str, count: int) -> np.ndarray:
    """`--frames` text (START:STOP[:STEP] or a comma list) -> [M] frame indices in [0, count)."""
    fix = f"Pass --frames as START:STOP[:STEP] or a comma list of frames in 0 .. {count - 1}"
    try:
        if ":" in text:
            parts = [int(part) if part.strip() else None for part in text.split(":")]
            if len(parts) > 3 or (len(parts) == 3 and parts[2] is not None and parts[2] <= 0):
                raise ValueError(text)
            frames = np.arange(count)[slice(*parts)]
        else:
            frames = np.array([int(part) for part in text.split(",")], dtype=np.int64)
    except ValueError as error:
        raise AvatarError(f"--frames {text!r} is not a frame range or list", fix=fix) from error
    if len(frames) == 0 or frames.min() < 0 or frames.max() >= count:
        raise AvatarError(f"--frames {text!r} picks no frame of the clip's {count}", fix=fix)
    return frames


@dataclass(frozen=True)
class _Drive:
    signals: ClipSignals
    head_poses: np.ndarray  # [F, 4, 4] head -> avatar frame
    cameras: np.ndarray  # [F, 4, 4] avatar frame -> the capture's camera
    mouth_scale: float  # the user's times the articulation gain
    frames: np.ndarray  # [M] the frames to export


def _drive(fitted: FittedHead, config: ExportConfig) -> _Drive | None:
    if config.audio is not None:
        clip = drive_with_audio(fitted, config.audio, mouth_scale=config.mouth_scale)
        frames = np.arange(clip.count) if config.frames is None else parse_frames(config.frames, clip.count)
        scale = clip.mouth_scale * clip.articulation_gain
        return _Drive(clip.signals, clip.head_poses, clip.view.cameras, scale, frames)
    if config.frames is None:
        return None
    tracking = fitted.dataset.tracking
    frames = parse_frames(config.frames, len(tracking.valid))
    untracked = frames[~tracking.valid[frames]]
    if len(untracked):
        raise AvatarError(
            f"--frames picks frames where the capture found no face ({untracked[:5].tolist()})",
            path=fitted.dataset.root,
            fix="Pick tracked frames, or pass --audio to drive the avatar",
        )
    signals = fitted.capture_driving()
    gain = fitted.articulation_gain(signals)
    pose = fitted.avatar_pose
    head_poses = np.linalg.inv(pose)[None] @ tracking.viewmats
    return _Drive(
        signals, head_poses, np.repeat(pose[None], len(head_poses), 0), config.mouth_scale * gain, frames
    )


def frame_gaussians(
    fitted: FittedHead, conditions: FrameConditions, head_pose: Tensor, mouth_scale: float
) -> GaussianSet:
    """The avatar of one driven frame in the avatar frame (`FittedHead.in_avatar_frame`)."""
    head = fitted.driver.model(conditions, mouth_scale=mouth_scale)[0][0]
    return fitted.in_avatar_frame(head, head_pose)


@torch.no_grad()
def export_avatar(config: ExportConfig) -> ExportManifest:
    """Writes the files of the module docstring; returns the manifest it wrote."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise AvatarError("--out is a file, not a directory", path=out, fix="Pass a directory to --out")
    check_writable(out / "export.json", flag="--out")
    fitted = load_fitted(config.run, device=config.device, backend="torch", dataset=config.dataset)
    model, device = fitted.driver.model, fitted.driver.device
    canonical = model.gaussians.activated()
    if fitted.torso is not None:
        canonical = concatenate([canonical, fitted.torso.gaussians.activated()])
    write_splat_ply(out / "canonical.ply", canonical)
    drive = _drive(fitted, config)
    exported = []
    if drive is not None:
        (out / "frames").mkdir(exist_ok=True)
        for index in tqdm(drive.frames.tolist(), desc="export", unit="frame", disable=not config.progress):
            conditions = drive.signals.conditions([index], window=model.window, device=device)
            head_pose = torch.from_numpy(drive.head_poses[index]).float().to(device)
            name = f"frames/{index:06d}.ply"
            write_splat_ply(out / name, frame_gaussians(fitted, conditions, head_pose, drive.mouth_scale))
            viewmat = np.asarray(drive.cameras[index], float).tolist()
            exported.append(ExportedFrame(index, name, viewmat))
    dataset = fitted.dataset
    manifest = ExportManifest(
        convention=CONVENTION,
        gaussians=canonical.num,
        canonical="canonical.ply",
        fps=float(dataset.fps),
        image_size=int(dataset.size),
        intrinsics=np.asarray(dataset.tracking.intrinsics, float).tolist(),
        audio=None if config.audio is None else Path(config.audio).resolve(),
        frames=exported,
    )
    manifest.write(out / "export.json")
    return manifest
