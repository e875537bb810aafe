"""Decode a phone video with PyAV: upright frames at a fixed frame rate, streamed one at a time."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avatar.core.errors import AvatarError


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # upright (after rotation)
    height: int
    rotation_ccw_deg: int  # rotation the container asks for before display, counter-clockwise
    duration_s: float
    source_fps: float
    codec: str
    has_audio: bool

    def num_output_frames(self, fps: float) -> int:
        return int(math.floor(self.duration_s * fps + 1e-6))


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise AvatarError("no such file", path=path, fix="Check the path of the video")
    try:
        return av.open(str(path))
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as error:
        raise AvatarError(
            f"this is not a video FFmpeg can read ({error.__class__.__name__})",
            path=path,
            fix="Pass an .mp4 or .mov file recorded by a phone or camera; if the file was copied, check it is complete",
        ) from error


def _first_frame_rotation(container: av.container.InputContainer, stream: av.video.VideoStream) -> int:
    for frame in container.decode(stream):
        return int(round(frame.rotation / 90.0)) * 90 % 360
    return 0


def probe_video(path: Path) -> VideoInfo:
    """Reads the container header and the first frame: size, rotation, duration, frame rate, audio presence."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise AvatarError(
                "the file has no video stream", path=path, fix="Pass a video file, not an audio or image file"
            )
        stream = container.streams.video[0]
        try:
            rotation = _first_frame_rotation(container, stream)
        except av.error.FFmpegError as error:
            raise AvatarError(
                f"the video stream cannot be decoded ({error})",
                path=path,
                fix="Re-export the video as H.264 or HEVC mp4",
            ) from error
        duration_s = _stream_duration(container, stream)
        rate = stream.average_rate or stream.guessed_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            rotation_ccw_deg=rotation,
            duration_s=duration_s,
            source_fps=float(rate) if rate else 0.0,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )


def _stream_duration(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def upright(image: np.ndarray, rotation_ccw_deg: int) -> np.ndarray:
    """Applies the container's display rotation: [H, W, 3] -> [H', W', 3]."""
    return np.ascontiguousarray(np.rot90(image, k=rotation_ccw_deg // 90)) if rotation_ccw_deg else image


def _ticks(info: VideoInfo, fps: float) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yields (k, decoded frame shown at time k / fps) for every output tick k.

    The frame shown at a tick is the latest frame whose timestamp is not after it (half a tick of tolerance),
    so a variable-frame-rate video becomes a constant-rate one without drift. Exactly
    `info.num_output_frames(fps)` ticks are produced; a video that ends early repeats its last frame."""
    total = info.num_output_frames(fps)
    half_tick = 0.5 / fps
    emitted = 0
    previous: av.VideoFrame | None = None
    with _open(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start: float | None = None
        try:
            for frame in container.decode(stream):
                time = frame.time if frame.time is not None else emitted / fps
                if start is None:
                    start = time
                time -= start
                while emitted < total and previous is not None and emitted / fps + half_tick < time:
                    yield emitted, previous
                    emitted += 1
                previous = frame
                if emitted >= total:
                    break
        except av.error.FFmpegError as error:
            if previous is None:
                raise AvatarError(
                    f"the video cannot be decoded ({error})", path=info.path, fix="Re-export the video as mp4"
                ) from error
        while emitted < total and previous is not None:
            yield emitted, previous
            emitted += 1


def _to_image(frame: av.VideoFrame, info: VideoInfo, max_side: int | None) -> np.ndarray:
    width, height = frame.width, frame.height
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    image = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    return upright(image, info.rotation_ccw_deg)


def iter_frames(info: VideoInfo, fps: float, *, max_side: int | None = None) -> Iterator[np.ndarray]:
    """Yields upright RGB frames [H, W, 3] uint8 at a fixed rate (see `_ticks`), shrunk to `max_side`."""
    last: tuple[av.VideoFrame, np.ndarray] | None = None
    for _, frame in _ticks(info, fps):
        if last is None or last[0] is not frame:
            last = (frame, _to_image(frame, info, max_side))
        yield last[1]


def sample_frames(
    info: VideoInfo, fps: float, ticks: set[int], *, max_side: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (k, frame) for the output ticks k in `ticks` only, converting no other frame."""
    for tick, frame in _ticks(info, fps):
        if tick in ticks:
            yield tick, _to_image(frame, info, max_side)
