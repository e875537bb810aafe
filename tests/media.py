"""Test media made on the fly: videos with chosen timestamps, audio and rotation tags."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,  # [T, H, W, 3] uint8 RGB
    times_s: list[float] | np.ndarray | None = None,
    fps: int = 25,
    audio: np.ndarray | None = None,  # [S] float32 mono
    audio_rate: int = 48000,
    codec: str = "libx264",
) -> Path:
    """Writes frames at the given presentation times (variable frame rate when they are irregular)."""
    times = np.arange(len(frames)) / fps if times_s is None else np.asarray(times_s)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=audio_rate)
            audio_stream.layout = "mono"
        for frame, time in zip(frames, times):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = int(round(time * 1000))
            video_frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            chunk = 1024
            samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            for start in range(0, len(samples), chunk):
                block = samples[None, start : start + chunk]
                audio_frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(block), format="s16", layout="mono"
                )
                audio_frame.sample_rate = audio_rate
                audio_frame.pts = start
                container.mux(audio_stream.encode(audio_frame))
            container.mux(audio_stream.encode())
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _boxes(data: bytes, start: int, end: int):
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
            header = 16
        elif size == 0:
            size = end - offset
        yield kind.decode("latin-1"), offset, offset + header, offset + size
        offset += size


def set_mp4_rotation(path: Path, degrees_clockwise: int) -> None:
    """Writes a display matrix into the video track's tkhd box, as a phone does for a portrait recording:
    players rotate the stored frames clockwise by `degrees_clockwise` before showing them."""
    data = bytearray(path.read_bytes())
    one, minus_one, w = 0x00010000, 0xFFFF0000, 0x40000000
    matrices = {
        0: (one, 0, 0, 0, one, 0, 0, 0, w),
        90: (0, one, 0, minus_one, 0, 0, 0, 0, w),
        180: (minus_one, 0, 0, 0, minus_one, 0, 0, 0, w),
        270: (0, minus_one, 0, one, 0, 0, 0, 0, w),
    }
    for kind, _, body, end in _boxes(data, 0, len(data)):
        if kind != "moov":
            continue
        for track_kind, _, track_body, track_end in _boxes(data, body, end):
            if track_kind != "trak":
                continue
            if b"vide" not in bytes(data[track_body:track_end]):
                continue
            for box_kind, _, box_body, _ in _boxes(data, track_body, track_end):
                if box_kind == "tkhd":
                    version = data[box_body]
                    matrix_at = box_body + (4 + 32 if version == 1 else 4 + 20) + 8 + 8
                    data[matrix_at : matrix_at + 36] = struct.pack(">9I", *matrices[degrees_clockwise % 360])
                    path.write_bytes(bytes(data))
                    return
    raise ValueError(f"{path}: no video track header found")
