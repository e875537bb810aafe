"""`avatar render`: a fitted head driven by any audio file, composited, written as an H.264 mp4 with the audio."""

from __future__ import annotations

import math
from collections.abc import Iterator
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
from avatar.audio.phones import AlignedSpeech, align_speech
from avatar.core.atomic import check_writable
from avatar.core.backends import DeviceName, RasterizerName
from avatar.core.errors import AvatarError
from avatar.drive.blinks import BlinkMode, eye_signal
from avatar.drive.compositor import to_uint8
from avatar.drive.driver import FittedHead, load_fitted
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
    match_amplitude: bool = True
    """Bring the driving audio's articulation to the amplitude of the capture's (the mouth of unheard speech
    moves as much as the person's); --no-match-amplitude renders the model's prediction as it is."""
    phones: bool = True
    """Hear the phones pocketsphinx aligns (its models are English); --no-phones drives the mouth from the voice
    alone, the path for audio in another language that the aligner would read as wrong phones."""
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


def _background(path: Path, plate: np.ndarray) -> np.ndarray:
    """The image at `path` resized to the plate's size, [S, S, 3] uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AvatarError("cannot read the background image", path=path, fix="Pass a PNG or JPEG file")
    return cv2.resize(
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB), plate.shape[1::-1], interpolation=cv2.INTER_AREA
    )


@dataclass(frozen=True)
class RenderResult:
    video: Path
    frames: int
    seconds_of_audio: float


@dataclass
class DrivenClip:
    """A fitted head driven by an audio clip, frame by frame (`frames()`), with the capture's poses looped."""

    fitted: FittedHead
    audio: np.ndarray  # [S] mono at `sample_rate`
    sample_rate: int
    speech: AlignedSpeech  # the audio's phones
    signals: ClipSignals
    poses: np.ndarray  # [count] the capture frame whose pose, torso and background each frame shows
    viewmats: np.ndarray  # [count, 4, 4]
    background: np.ndarray  # [S, S, 3] uint8
    mouth_scale: float = 1.0  # the user's, times `articulation_gain` when rendered
    articulation_gain: float = 1.0  # brings the clip's articulation to the capture's (drive/articulation.py)

    @property
    def count(self) -> int:
        return len(self.poses)

    def frames(self, *, progress: bool = False) -> Iterator[np.ndarray]:
        """-> [S, S, 3] uint8 composited frames, one per video frame of the audio."""
        driver = self.fitted.driver
        for i in tqdm(range(self.count), desc="render", unit="frame", disable=not progress, leave=False):
            conditions = self.signals.conditions([i], window=driver.model.window, device=driver.device)
            viewmat = torch.from_numpy(self.viewmats[i : i + 1])
            scale = self.mouth_scale * self.articulation_gain
            head = driver.render(conditions, viewmat, mouth_scale=scale)[0]
            yield to_uint8(self.fitted.composite(head, int(self.poses[i]), self.background))


def drive_with_audio(
    fitted: FittedHead,
    audio_path: Path,
    *,
    yaw_deg: float = 0.0,
    mouth_scale: float = 1.0,
    match_amplitude: bool = True,
    phones: bool = True,
    blink: BlinkMode = "capture",
    background: np.ndarray | None = None,
) -> DrivenClip:
    """`fitted` driven by the audio file at `audio_path` (any format PyAV reads; AvatarError when it has no
    audio or is shorter than a frame); `phones=False` drives it without the aligned phones (the clip's
    `speech` still has them, for scoring)."""
    if not (math.isfinite(mouth_scale) and 0 <= mouth_scale <= 4):
        raise AvatarError(f"--mouth-scale {mouth_scale} is outside 0 .. 4", fix="Pass e.g. 0.5, 1 or 1.5")
    dataset = fitted.dataset
    feature_config = fitted.record.audio_features
    audio = load_audio(audio_path, feature_config.sample_rate)
    fps = dataset.fps
    count = num_video_frames(len(audio), feature_config.sample_rate, fps)
    if count < 1:
        raise AvatarError(
            "the audio is shorter than one video frame", path=audio_path, fix="Pass a longer audio"
        )
    speech = align_speech(audio, feature_config.sample_rate)
    heard = speech if phones else AlignedSpeech(None, "phones turned off (--no-phones)")
    features = fitted.driving_features(audio_features_for_frames(audio, count, fps, feature_config), heard)
    tracking = dataset.tracking
    valid = tracking.valid
    poses = pingpong(np.flatnonzero(valid), count)
    eye = eye_signal(
        blink,
        tracking.eye_openness[valid],
        tracking.eye_openness[poses],
        fps,
        capture_blink=tracking.blink[valid],
    )
    turn = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    signals = fitted.with_predicted_motion(
        ClipSignals(features, eye, tracking.rotations[poses] @ turn, tracking.translations[poses])
    )
    viewmats = np.tile(np.eye(4), (count, 1, 1))
    viewmats[:, :3, :3] = signals.rotations
    viewmats[:, :3, 3] = signals.translations
    plate = dataset.background() if background is None else background
    gain = fitted.articulation_gain(signals) if match_amplitude else 1.0
    return DrivenClip(
        fitted, audio, feature_config.sample_rate, speech, signals, poses, viewmats, plate, mouth_scale, gain
    )


def render_video(config: RenderConfig) -> RenderResult:
    check_writable(config.out, flag="--out")
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    background = (
        None if config.background is None else _background(config.background, fitted.dataset.background())
    )
    clip = drive_with_audio(
        fitted,
        config.audio,
        yaw_deg=config.yaw_deg,
        mouth_scale=config.mouth_scale,
        match_amplitude=config.match_amplitude,
        phones=config.phones,
        blink=config.blink,
        background=background,
    )
    size, fps = fitted.dataset.size, int(round(fitted.dataset.fps))
    with VideoWriter(config.out, fps, size, size, audio=clip.audio, audio_rate=clip.sample_rate) as writer:
        for frame in clip.frames(progress=config.progress):
            writer.write(frame)
    return RenderResult(config.out, clip.count, len(clip.audio) / clip.sample_rate)
