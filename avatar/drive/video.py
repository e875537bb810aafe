"""`avatar render`: a fitted head driven by any audio file, composited, written as an H.264 mp4 with the audio."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

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
from avatar.core.pinhole import centered_intrinsics
from avatar.data.head_window import HeadWindow
from avatar.drive.background import PLATE, Background, parse_background
from avatar.drive.blinks import BlinkMode, eye_signal
from avatar.drive.camera_path import CameraPath, orbit_cameras, parse_orbit, path_cameras
from avatar.drive.compositor import to_uint8
from avatar.drive.driver import FittedHead, load_fitted
from avatar.drive.phonetic_mouth import PhoneticBlend
from avatar.media.audio_io import load_audio
from avatar.media.images import write_png
from avatar.media.video_writer import VIDEO_FORMATS, VideoWriter, video_format
from avatar.model.talking_head import ClipSignals


@dataclass
class RenderConfig:
    """Drive a fitted head with an audio file and write a video."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """An `avatar fit` output directory."""
    audio: Path
    """Driving audio: wav, flac, mp3, m4a, or a video's audio track; any sample rate."""
    out: Path
    """The video to write: .mp4 (H.264), or with an alpha channel .webm (VP9) or .mov (ProRes 4444)."""
    background: str | None = None
    """plate (the capture's background; only with the capture's camera), transparent (an alpha channel: --out
    .webm or .mov), a colour (white, black, grey, green, blue or #rrggbb) or an image file; default: the plate
    with the capture's camera, grey with another."""
    camera: str = "capture"
    """capture (the capture's camera), orbit:DEG (the camera swings +-DEG about the avatar over the clip) or a
    camera path .json file (keyframed, docs/camera_path.md)."""
    torso_from_capture: bool = True
    """With the capture's camera, the Gaussian torso takes its colour from the capture's own frames (where the
    head and torso meet is still the one-pass render's); --no-torso-from-capture shows the Gaussians' own
    colours, as every other camera does."""
    frames_dir: Path | None = None
    """Also write every frame as a PNG in this folder (RGBA when transparent)."""
    yaw_deg: float = 0.0
    """Turn the head by this angle about its vertical axis (the camera stays)."""
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


@dataclass(frozen=True)
class RenderResult:
    video: Path
    frames: int
    seconds_of_audio: float
    phones_note: str | None = None  # how the phones drove the mouth, where the phone check turned them off
    # how much of the mouth is phonetic (`PhoneticBlend.summary`); None: the audio has no phones
    mouth_note: str | None = None


@dataclass
class DrivenClip:
    """A fitted head driven by an audio clip, frame by frame (`frames()`), with the capture's poses looped."""

    fitted: FittedHead
    audio: np.ndarray  # [S] mono at `sample_rate`
    sample_rate: int
    speech: AlignedSpeech  # the audio's phones
    signals: ClipSignals
    poses: np.ndarray  # [count] the capture frame whose head pose (and torso) each frame shows
    head_poses: np.ndarray  # [count, 4, 4] head -> avatar frame
    view: RenderView  # the cameras, where the head is rendered and what is behind it
    mouth_scale: float = 1.0  # the user's, times `articulation_gain` when rendered
    articulation_gain: float = 1.0  # brings the clip's articulation to the capture's (drive/articulation.py)
    phonetic: PhoneticBlend | None = None  # how much of the mouth is phonetic (drive/phonetic_mouth.py)

    @property
    def count(self) -> int:
        return len(self.poses)

    @property
    def viewmats(self) -> np.ndarray:
        """[count, 4, 4] head -> camera."""
        return self.view.cameras @ self.head_poses

    def frames(self, *, progress: bool = False) -> Iterator[np.ndarray]:
        """-> [S, S, 3] uint8 composited frames, one per video frame of the audio; [S, S, 4] RGBA (straight
        alpha) when the background is transparent."""
        driver = self.fitted.driver
        view, viewmats = self.view, self.viewmats
        scale = self.mouth_scale * self.articulation_gain
        for i in tqdm(range(self.count), desc="render", unit="frame", disable=not progress, leave=False):
            conditions = self.signals.conditions([i], window=driver.model.window, device=driver.device)
            K = None if view.intrinsics is None else torch.from_numpy(view.intrinsics[i])
            if view.bust:
                pose, camera = torch.from_numpy(self.head_poses[i]), torch.from_numpy(view.cameras[i])
                head = driver.render_bust(
                    conditions,
                    pose,
                    camera,
                    K,
                    view.resolution,
                    mouth_scale=scale,
                    torso_share=view.capture_torso,
                )
            else:
                viewmat = torch.from_numpy(viewmats[i : i + 1])
                (head,) = driver.render(
                    conditions, viewmat, mouth_scale=scale, K=K, resolution=view.resolution
                )
            torso = int(self.poses[i]) if view.capture_torso else None
            yield to_uint8(self.fitted.composite(head, torso, view.background, window=view.window))


@dataclass(frozen=True)
class RenderView:
    """How a driven clip is seen: its cameras, the window its head is rendered in and what is behind it."""

    cameras: np.ndarray  # [count, 4, 4] avatar frame -> camera
    window: HeadWindow  # the square of the output frame the head (or the bust) is rendered in
    resolution: int  # pixels of the rendered window's side
    intrinsics: np.ndarray | None  # [count, 3, 3] of the rendered window per frame; None: the run's own
    bust: bool  # the Gaussian torso is rasterized with the head in one pass
    # the capture's own torso pixels show (its camera only): pasted under the head, or with a Gaussian torso
    # as its colour
    capture_torso: bool
    background: np.ndarray | None  # [S, S, 3] uint8; None: transparent


def render_view(
    fitted: FittedHead,
    background: Background,
    times: np.ndarray,
    camera: str,
    *,
    torso_from_capture: bool = True,
) -> RenderView:
    """The `RenderView` of `--camera`, `--background` and `--torso-from-capture` for frames at `times` [T]
    seconds."""
    dataset = fitted.dataset
    size, pose, bust = dataset.size, fitted.avatar_pose, fitted.torso is not None
    shown = None if background.transparent else background.pixels(dataset.background())
    if camera == "capture":
        cameras = np.repeat(pose[None], len(times), axis=0)
        if not bust:
            return RenderView(cameras, fitted.window, fitted.driver.resolution, None, False, True, shown)
        focal = np.full(len(times), float(dataset.tracking.intrinsics[0, 0]))
    else:
        if background.kind == "plate":
            raise AvatarError(
                "the background plate is what the capture's camera saw; another camera sees something else",
                fix="Pass --background transparent, a colour or an image with --camera " + camera,
            )
        degrees = parse_orbit(camera)
        if degrees is not None:
            track = orbit_cameras(pose, float(dataset.tracking.intrinsics[0, 0]), degrees, times)
        else:
            track = path_cameras(CameraPath.read(Path(camera)), times, size)
        cameras, focal = track.viewmats, track.focal_px
    intrinsics = fitted.bust_intrinsics(np.stack([centered_intrinsics(f, size) for f in focal]))
    window = HeadWindow(0, 0, size)  # the whole frame, at the pixel density of the head window
    capture_torso = camera == "capture" and torso_from_capture
    return RenderView(cameras, window, fitted.bust_resolution, intrinsics, bust, capture_torso, shown)


def drive_with_audio(
    fitted: FittedHead,
    audio_path: Path,
    *,
    yaw_deg: float = 0.0,
    mouth_scale: float = 1.0,
    match_amplitude: bool = True,
    phones: bool = True,
    blink: BlinkMode = "capture",
    background: Background = PLATE,
    camera: str = "capture",
    torso_from_capture: bool = True,
) -> DrivenClip:
    """`fitted` driven by the audio file at `audio_path` (any format PyAV reads; AvatarError when it has no
    audio or is shorter than a frame); `phones=False` drives it without the aligned phones (the clip's
    `speech` still has them, for scoring); `camera` and `torso_from_capture` as `--camera` and
    `--torso-from-capture`."""
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
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    view = render_view(
        fitted, background, np.arange(count) / fps, camera, torso_from_capture=torso_from_capture
    )
    # the head moves in the avatar frame as it moved in the capture
    head_poses = np.linalg.inv(fitted.avatar_pose)[None] @ tracking.viewmats[poses] @ turn
    viewmats = view.cameras @ head_poses
    windows = audio_features_for_frames(audio, count, fps, feature_config)
    # the view token sees this camera
    signals = fitted.new_audio_signals(windows, heard, eye, viewmats[:, :3, :3], viewmats[:, :3, 3])
    gain = fitted.articulation_gain(signals) if match_amplitude else 1.0
    signals, phonetic = fitted.with_phonetic_mouth(signals, heard, gain)
    return DrivenClip(
        fitted,
        audio,
        feature_config.sample_rate,
        speech,
        signals,
        poses,
        head_poses,
        view,
        mouth_scale,
        gain,
        phonetic,
    )


def render_video(config: RenderConfig, on_frame: Callable[[int, int], None] | None = None) -> RenderResult:
    """Writes `config.out`; `on_frame(done, total)` is called after each frame is written."""
    check_writable(config.out, flag="--out")
    try:
        alpha = video_format(config.out).alpha
    except ValueError as error:
        raise AvatarError(
            str(error), path=config.out, fix=f"Pass --out NAME{' or NAME'.join(VIDEO_FORMATS)}"
        ) from error
    default = "plate" if config.camera == "capture" else "grey"
    background = parse_background(default if config.background is None else config.background)
    if background.transparent and not alpha:
        raise AvatarError(
            "a transparent render needs a video format with an alpha channel",
            path=config.out,
            fix="Pass --out NAME.webm (VP9: browsers, FFmpeg) or NAME.mov (ProRes 4444: video editors)",
        )
    if config.frames_dir is not None:
        check_writable(Path(config.frames_dir) / "000000.png", flag="--frames-dir")
    if config.camera != "capture" and parse_orbit(config.camera) is None:
        CameraPath.read(Path(config.camera))  # a bad path file is refused before any work
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    clip = drive_with_audio(
        fitted,
        config.audio,
        yaw_deg=config.yaw_deg,
        mouth_scale=config.mouth_scale,
        match_amplitude=config.match_amplitude,
        phones=config.phones,
        blink=config.blink,
        background=background,
        camera=config.camera,
        torso_from_capture=config.torso_from_capture,
    )
    size, fps = fitted.dataset.size, int(round(fitted.dataset.fps))
    with VideoWriter(config.out, fps, size, size, audio=clip.audio, audio_rate=clip.sample_rate) as writer:
        for index, frame in enumerate(clip.frames(progress=config.progress)):
            if alpha and frame.shape[-1] == 3:
                frame = np.concatenate([frame, np.full_like(frame[..., :1], 255)], axis=-1)
            writer.write(frame)
            if config.frames_dir is not None:
                write_png(Path(config.frames_dir) / f"{index:06d}.png", frame)
            if on_frame is not None:
                on_frame(index + 1, clip.count)
    checked_off = config.phones and fitted.hears_phones and not fitted.uses_phones
    note = fitted.phone_check.summary() if checked_off else None
    mouth = None if clip.phonetic is None else clip.phonetic.summary()
    return RenderResult(config.out, clip.count, len(clip.audio) / clip.sample_rate, note, mouth)
