"""Streaming video writer via PyAV: H.264 mp4, or with an alpha channel VP9 WebM or ProRes 4444 MOV; optionally
with a mono soundtrack.

The container follows the file's suffix (`VIDEO_FORMATS`): `.mp4` is H.264 (yuv420p) with AAC audio, opaque;
`.webm` is VP9 with alpha (yuva420p) and Opus audio, which browsers and FFmpeg's libvpx decoder read with its
alpha; `.mov` is ProRes 4444 with alpha (yuva444p10le) and AAC audio, which video editors read. Frames are
encoded as they arrive, so a long render never holds the whole video in memory. The file is written beside
`path` under a temporary name and renamed onto `path` only by a clean `close()`; leaving a `with` block through
an exception removes the temporary file instead, so `path` is either the previous file or a complete new one.
The rename is `avatar.core.atomic.commit`, which fsyncs the file before it and the folder after it, so that
holds across a crash too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from avatar.core.atomic import commit


@dataclass(frozen=True)
class VideoFormat:
    """A container and the codecs written into it."""

    container: str
    codec: str
    pix_fmt: str
    audio_codec: str
    alpha: bool  # frames are [H, W, 4] RGBA (straight alpha), else [H, W, 3] RGB
    options: dict[str, str] = field(default_factory=dict)

    def audio_rates(self) -> frozenset[int]:
        return frozenset(av.codec.Codec(self.audio_codec, "w").audio_rates or ())


VIDEO_FORMATS: dict[str, VideoFormat] = {
    ".mp4": VideoFormat("mp4", "libx264", "yuv420p", "aac", False, {"preset": "medium"}),
    ".webm": VideoFormat(
        "webm", "libvpx-vp9", "yuva420p", "libopus", True, {"deadline": "realtime", "cpu-used": "8", "b": "0"}
    ),
    ".mov": VideoFormat("mov", "prores_ks", "yuva444p10le", "aac", True, {"profile": "4444"}),
}
ALPHA_SUFFIXES = tuple(suffix for suffix, format in VIDEO_FORMATS.items() if format.alpha)
_FALLBACK_RATE = 48000  # every audio encoder here takes it


def video_format(path: Path) -> VideoFormat:
    """The `VideoFormat` of `path`'s suffix; ValueError for another suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(
            f"{path}: videos are written as {', '.join(VIDEO_FORMATS)}, not {suffix or 'no suffix'}"
        )
    return VIDEO_FORMATS[suffix]


class VideoWriter:
    """Write frames (and an optional mono soundtrack) to the `VideoFormat` of `path`'s suffix.

    Usage:
        with VideoWriter(path, fps=25, width=512, height=512, audio=samples, audio_rate=16000) as writer:
            for frame in frames:
                writer.write(frame)  # [H, W, 3] uint8 RGB; [H, W, 4] RGBA for .webm and .mov
    """

    def __init__(
        self,
        path: Path,
        fps: int,
        width: int,
        height: int,
        *,
        audio: np.ndarray | None = None,  # [S] float32 mono in [-1, 1]
        audio_rate: int = 16000,
        crf: int = 18,
    ) -> None:
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(
                f"H.264 yuv420p needs a positive, even width and height, got {width}x{height}; "
                "crop or pad the frames by one pixel"
            )
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {crf}")
        self.format = video_format(path)
        self.path = Path(path)
        self.fps = int(fps)
        self.width = int(width)
        self.height = int(height)
        self.frames_written = 0
        self._closed = False

        self._audio: np.ndarray | None = None
        self._audio_rate = int(audio_rate)
        self._audio_done = 0  # samples of self._audio already handed to the encoder
        if audio is not None:
            self._audio, self._audio_rate = _prepare_audio(audio, int(audio_rate), self.format.audio_rates())

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh name rather than mkstemp: FFmpeg creates the file, so it gets the usual permissions, not 0600.
        self._temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.partial")
        options = {"movflags": "+faststart"} if self.format.container in ("mp4", "mov") else {}
        self._container = av.open(
            str(self._temporary), mode="w", format=self.format.container, options=options
        )
        try:
            self._video = self._container.add_stream(self.format.codec, rate=self.fps)
            self._video.width = self.width
            self._video.height = self.height
            self._video.pix_fmt = self.format.pix_fmt
            quality = {"crf": str(int(crf))} if self.format.codec != "prores_ks" else {}
            self._video.codec_context.options = {**quality, **self.format.options}
            self._audio_stream = None
            if self._audio is not None:
                self._audio_stream = self._container.add_stream(
                    self.format.audio_codec, rate=self._audio_rate, layout="mono"
                )
                self._audio_stream.codec_context.bit_rate = 96000
                self._audio_frame = self._audio_stream.codec_context.frame_size or 1024
                formats = [f.name for f in av.codec.Codec(self.format.audio_codec, "w").audio_formats or ()]
                self._sample_format = "fltp" if "fltp" in formats or not formats else "flt"
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame: [H, W, 3] uint8 RGB, or [H, W, 4] RGBA (straight alpha) for an alpha format."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        channels, kind = (4, "RGBA") if self.format.alpha else (3, "RGB")
        if frame.shape != (self.height, self.width, channels) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a [{self.height}, {self.width}, {channels}] uint8 {kind} frame, "
                f"got {list(frame.shape)} {frame.dtype}"
            )
        video_frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(frame), format="rgba" if channels == 4 else "rgb24"
        )
        video_frame.pts = self.frames_written
        self._mux(self._video.encode(video_frame))
        self.frames_written += 1
        # Interleave: keep the encoded audio level with the video written so far.
        if self._audio is not None:
            self._encode_audio_until(round(self.frames_written * self._audio_rate / self.fps))

    def close(self) -> None:
        """Flush the encoders, finish the file and move it onto `path`."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written, so no video was made")
        try:
            self._mux(self._video.encode(None))
            if self._audio is not None:
                self._encode_audio_until(len(self._audio))
                self._mux(self._audio_stream.encode(None))
            self._container.close()
            self._closed = True
            commit(self._temporary, self.path)  # fsync, rename onto `path`, fsync the folder
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop without producing `path`; the temporary file is removed."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # the file is being thrown away; a second error would only hide the first
                pass
        self._temporary.unlink(missing_ok=True)

    def _encode_audio_until(self, end: int) -> None:
        end = min(end, len(self._audio))
        chunk = self._audio_frame
        while self._audio_done < end:
            stop = min(self._audio_done + chunk, end)
            if stop - self._audio_done < chunk and end < len(self._audio):
                return  # a fixed-frame encoder (Opus) takes whole frames until the last
            samples = self._audio[self._audio_done : stop]
            audio_frame = av.AudioFrame.from_ndarray(
                samples[None, :], format=self._sample_format, layout="mono"
            )
            audio_frame.sample_rate = self._audio_rate
            audio_frame.pts = self._audio_done
            self._mux(self._audio_stream.encode(audio_frame))
            self._audio_done = stop

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


def _prepare_audio(audio: np.ndarray, rate: int, rates: frozenset[int]) -> tuple[np.ndarray, int]:
    """Validate mono float audio; resample to 48 kHz when the encoder takes none of `rates` but others."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
    if rate <= 0:
        raise ValueError(f"audio_rate must be positive, got {rate}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    audio = np.clip(audio.astype(np.float32), -1.0, 1.0)
    if rate in rates or not rates:
        return audio, rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=_FALLBACK_RATE)
    frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
    frame.sample_rate = rate
    resampled = [out.to_ndarray()[0] for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(resampled).astype(np.float32), _FALLBACK_RATE
