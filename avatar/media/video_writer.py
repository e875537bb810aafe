"""Streaming mp4 writer: H.264 (yuv420p) video, optionally with a mono AAC audio track, via PyAV.

Frames are encoded as they arrive, so a long render never holds the whole video in memory. The file is
written beside `path` under a temporary name and renamed onto `path` only by a clean `close()`; leaving a
`with` block through an exception removes the temporary file instead, so `path` is either the previous
file or a complete new one. The rename is `avatar.core.atomic.commit`, which fsyncs the file before it and
the folder after it, so that holds across a crash too.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from avatar.core.atomic import commit

# The AAC encoder's audio_rates lists what it accepts; every rate a talking-head pipeline uses is among them.
_AAC_RATES = frozenset(av.codec.Codec("aac", "w").audio_rates or ())
_AAC_FALLBACK_RATE = 48000


class VideoWriter:
    """Write RGB frames (and an optional mono soundtrack) to an H.264 mp4.

    Usage:
        with VideoWriter(path, fps=25, width=512, height=512, audio=samples, audio_rate=16000) as writer:
            for frame in frames:
                writer.write(frame)  # [H, W, 3] uint8 RGB
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
            self._audio, self._audio_rate = _prepare_audio(audio, int(audio_rate))

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh name rather than mkstemp: FFmpeg creates the file, so it gets the usual permissions, not 0600.
        self._temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.mp4.partial")
        self._container = av.open(
            str(self._temporary), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        try:
            self._video = self._container.add_stream("libx264", rate=self.fps)
            self._video.width = self.width
            self._video.height = self.height
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.options = {"crf": str(int(crf)), "preset": "medium"}
            self._audio_stream = None
            if self._audio is not None:
                self._audio_stream = self._container.add_stream("aac", rate=self._audio_rate, layout="mono")
                self._audio_stream.codec_context.bit_rate = 96000
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
        """Encode one frame: [H, W, 3] uint8 RGB."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a [{self.height}, {self.width}, 3] uint8 RGB frame, got {list(frame.shape)} {frame.dtype}"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
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
        chunk = 1024
        while self._audio_done < end:
            stop = min(self._audio_done + chunk, end)
            samples = self._audio[self._audio_done : stop]
            audio_frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            audio_frame.sample_rate = self._audio_rate
            audio_frame.pts = self._audio_done
            self._mux(self._audio_stream.encode(audio_frame))
            self._audio_done = stop

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


def _prepare_audio(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Validate mono float audio; resample to 48 kHz when the AAC encoder rejects `rate`."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
    if rate <= 0:
        raise ValueError(f"audio_rate must be positive, got {rate}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    audio = np.clip(audio.astype(np.float32), -1.0, 1.0)
    if rate in _AAC_RATES:
        return audio, rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=_AAC_FALLBACK_RATE)
    frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
    frame.sample_rate = rate
    resampled = [out.to_ndarray()[0] for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(resampled).astype(np.float32), _AAC_FALLBACK_RATE
