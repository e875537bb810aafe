"""`avatar render`: a fitted head driven by any audio file, composited, written as an H.264 mp4 with the audio."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import torch
import tyro
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from avatar.audio.features import audio_features_for_frames, num_video_frames
from avatar.core.atomic import check_writable
from avatar.core.backends import DeviceName, RasterizerName
from avatar.core.errors import AvatarError
from avatar.drive.blinks import BlinkMode, eye_signal
from avatar.drive.compositor import to_uint8
from avatar.drive.driver import load_fitted
from avatar.media.audio_io import load_audio
from avatar.media.video_writer import VideoWriter
from avatar.model.talking_head import ClipSignals


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
    mouth_scale: float = 1.0
    """Scale the articulation: 0.5 for softer speech, 1.5 for louder; closures stay closed."""
    blink: BlinkMode = "capture"
    """Eyes: the capture's own blinks (looped with its poses), none, or natural periodic blinks (3-5 s)."""
    dataset: Path | None = None
    """The dataset the run was fitted to, if it has moved."""
    device: DeviceName = "auto"
    """Where to render."""
    backend: RasterizerName = "auto"
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


@dataclass(frozen=True)
class RenderResult:
    video: Path
    frames: int
    seconds_of_audio: float


def render_video(config: RenderConfig) -> RenderResult:
    check_writable(config.out, flag="--out")
    if not (math.isfinite(config.mouth_scale) and 0 <= config.mouth_scale <= 4):
        raise AvatarError(
            f"--mouth-scale {config.mouth_scale} is outside 0 .. 4", fix="Pass e.g. 0.5, 1 or 1.5"
        )
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    dataset = fitted.dataset
    feature_config = fitted.record.audio_features
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
    valid = tracking.valid
    eye = eye_signal(
        config.blink,
        tracking.eye_openness[valid],
        tracking.eye_openness[poses],
        fps,
        capture_blink=tracking.blink[valid],
    )
    signals = ClipSignals(features, eye, tracking.rotations[poses] @ turn, tracking.translations[poses])
    viewmats = np.tile(np.eye(4), (count, 1, 1))
    viewmats[:, :3, :3] = signals.rotations
    viewmats[:, :3, 3] = signals.translations
    background = _background(config, dataset.background())
    driver = fitted.driver
    with VideoWriter(
        config.out,
        int(round(fps)),
        dataset.size,
        dataset.size,
        audio=audio,
        audio_rate=feature_config.sample_rate,
    ) as writer:
        for i in tqdm(range(count), desc="render", unit="frame", disable=not config.progress, leave=False):
            conditions = signals.conditions([i], window=driver.model.window, device=driver.device)
            head = driver.render(
                conditions, torch.from_numpy(viewmats[i : i + 1]), mouth_scale=config.mouth_scale
            )[0]
            writer.write(to_uint8(fitted.composite(head, int(poses[i]), background)))
    return RenderResult(config.out, count, len(audio) / feature_config.sample_rate)
