"""`avatar render`: a fitted head driven by any audio file, composited, written as an H.264 mp4 with the audio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import torch
import tyro
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from avatar.audio_features import AudioFeatureConfig, audio_features_for_frames, num_video_frames
from avatar.composite import head_over, to_uint8, torso_over_background
from avatar.drive import load_fitted
from avatar.errors import AvatarError
from avatar.media.audio_io import load_audio
from avatar.media.video_writer import VideoWriter
from avatar.model.talking_head import frame_conditions


@dataclass
class RenderConfig:
    """Drive a fitted head with an audio file and write a video."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """An `avatar fit` output directory."""
    audio: Path
    """Driving audio: wav, flac, mp3, m4a, or a video's audio track; any sample rate."""
    out: Path
    """The mp4 to write."""
    background: Path | None = None
    """An image to use as background instead of the capture's background plate."""
    yaw_deg: float = 0.0
    """Turn the head by this angle about its vertical axis (a new viewpoint)."""
    dataset: Path | None = None
    """The dataset the run was fitted to, if it has moved."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to render."""
    backend: Literal["auto", "torch", "cuda", "gsplat"] = "auto"
    """Rasterizer implementation."""
    progress: bool = True
    """Show a progress bar."""


def pingpong(frames: np.ndarray, count: int) -> np.ndarray:
    """[F] frame indices -> [count] indices running forwards and backwards over them (no jump at the ends)."""
    if len(frames) == 1:
        return np.repeat(frames, count)
    period = 2 * (len(frames) - 1)
    position = np.arange(count) % period
    return frames[np.where(position < len(frames), position, period - position)]


def _background(config: RenderConfig, plate: np.ndarray) -> np.ndarray:
    if config.background is None:
        return plate
    image = cv2.imread(str(config.background), cv2.IMREAD_COLOR)
    if image is None:
        raise AvatarError(
            "cannot read the background image", path=config.background, fix="Pass a PNG or JPEG file"
        )
    return cv2.resize(
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB), plate.shape[1::-1], interpolation=cv2.INTER_AREA
    )


def render_video(config: RenderConfig) -> dict:
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    dataset = fitted.dataset
    feature_config = AudioFeatureConfig(
        **{k: v for k, v in fitted.run["audio_features"].items() if k != "shape"}
    )
    audio = load_audio(config.audio, feature_config.sample_rate)
    fps = dataset.fps
    count = num_video_frames(len(audio), feature_config.sample_rate, fps)
    if count < 1:
        raise AvatarError(
            "the audio is shorter than one video frame", path=config.audio, fix="Pass a longer audio"
        )
    features = fitted.driving_features(audio_features_for_frames(audio, count, fps, feature_config))
    tracking = dataset.tracking
    poses = pingpong(np.flatnonzero(tracking.valid), count)
    turn = Rotation.from_euler("y", config.yaw_deg, degrees=True).as_matrix()
    rotations = tracking.rotations[poses] @ turn
    translations = tracking.translations[poses]
    eye = tracking.eye_openness[poses]
    viewmats = np.tile(np.eye(4), (count, 1, 1))
    viewmats[:, :3, :3] = rotations
    viewmats[:, :3, 3] = translations
    background = _background(config, dataset.background())
    size = dataset.size
    driver = fitted.driver
    config.out.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(
        config.out, int(round(fps)), size, size, audio=audio, audio_rate=feature_config.sample_rate
    ) as writer:
        for i in tqdm(range(count), desc="render", unit="frame", disable=not config.progress, leave=False):
            conditions = frame_conditions(
                features, eye, rotations, translations, [i], window=driver.model.window, device=driver.device
            )
            head = driver.render(conditions, torch.from_numpy(viewmats[i : i + 1]))[0]
            pose_frame = int(poses[i])
            base = torso_over_background(dataset.frame(pose_frame), dataset.masks(pose_frame), background)
            frame = head_over(base, head.rgb.cpu().numpy(), head.alpha.cpu().numpy(), fitted.window)
            writer.write(to_uint8(frame))
    return {
        "video": str(config.out),
        "frames": count,
        "seconds_of_audio": len(audio) / feature_config.sample_rate,
    }
