"""Audio input/output: decode any audio file (or a video's audio track) to mono float32, write PCM16 WAV.

Decoding goes through PyAV (FFmpeg), so every container and codec FFmpeg reads works: wav, flac, mp3,
m4a/aac, ogg/opus, and the sound of mp4/mov videos. Multi-channel audio is downmixed to mono as the mean of
its channels (FFmpeg's own stereo-to-mono matrix adds the channels at -3 dB each, which can exceed [-1, 1]).
"""

from __future__ import annotations

import logging
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import av.audio.stream
import av.container
import numpy as np

from avatar.core.atomic import atomic_path
from avatar.core.errors import AvatarError

_log = logging.getLogger(__name__)

_CONVERT_FIX = "Convert it to WAV, e.g. `ffmpeg -i INPUT -vn -ac 1 -ar 16000 audio.wav`, and pass that file"

# FFmpeg's "tty" demuxer opens any .txt/.nfo/.asc file as ANSI art, which is never what a user meant.
_TEXT_DEMUXERS = {"tty"}


def load_audio(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of `path` to mono at `sample_rate`.

    Frames are decoded and resampled one at a time (`av.AudioResampler`), so memory holds the output and one
    frame, not the file's native-rate samples. Damaged packets are skipped as the ffmpeg command line does,
    with a logged warning.

    Returns:
        audio: np.ndarray  # [S] float32 in [-1, 1], the mean of the file's channels
    Raises:
        AvatarError: the file is missing, is not media FFmpeg can read, has no audio stream, or decodes to
            zero samples.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    chunks: list[np.ndarray] = []
    with _open_audio_stream(path) as (container, stream):
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        try:
            for frame in _decode_frames(path, container, stream):
                chunks.extend(_mean_of_channels(out) for out in resampler.resample(frame))
            chunks.extend(_mean_of_channels(out) for out in resampler.resample(None))
        except ValueError as error:  # PyAV: "Frame does not match AudioResampler setup"
            raise AvatarError(
                f"its audio changes sample format or channel layout midway ({error})",
                path=path,
                fix=_CONVERT_FIX,
            ) from error
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise _no_samples_error(path)
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


def audio_duration_seconds(path: Path) -> float:
    """Duration of the first audio stream of `path` in seconds, counted from the decoded samples.

    Decoding (fast for audio) rather than reading the container's duration field, which is an estimate for
    VBR mp3 and includes encoder priming for AAC, keeps this equal to `len(load_audio(path, sr)) / sr` to
    within one resampling filter length.

    Raises:
        AvatarError: as `load_audio`.
    """
    path = Path(path)
    samples_per_rate: dict[int, int] = {}
    with _open_audio_stream(path) as (container, stream):
        for frame in _decode_frames(path, container, stream):
            samples_per_rate[frame.sample_rate] = samples_per_rate.get(frame.sample_rate, 0) + frame.samples
    if sum(samples_per_rate.values()) == 0:
        raise _no_samples_error(path)
    return sum(samples / rate for rate, samples in samples_per_rate.items())


def save_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write `audio` as a mono 16-bit PCM WAV file, atomically and durably (`atomic_path`: a temporary file,
    fsynced, renamed over `path`).

    Args:
        audio: np.ndarray  # [S] float, values outside [-1, 1] are clipped
    """
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be a 1-D float array, got shape {audio.shape} and dtype {audio.dtype}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with atomic_path(Path(path)) as temporary:
        with open(temporary, "wb") as file, wave.open(file, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(int(sample_rate))
            writer.writeframes(pcm.tobytes())


@contextmanager
def _open_audio_stream(
    path: Path,
) -> Iterator[tuple[av.container.InputContainer, av.audio.stream.AudioStream]]:
    if not path.exists():
        raise AvatarError("audio file not found", path=path, fix="Check the path and the current directory")
    if not path.is_file():
        raise AvatarError(
            "is not a file", path=path, fix="Pass an audio file (wav, flac, mp3, m4a) or a video"
        )
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise AvatarError(
            f"is not an audio or video file FFmpeg can read ({_reason(error)}); "
            "it may be truncated or corrupt",
            path=path,
            fix="Pass a wav, flac, mp3, m4a, ogg or video file; if it is one, re-export or re-download it",
        ) from error
    try:
        if container.format.name in _TEXT_DEMUXERS:
            raise AvatarError(
                "is a text file, not audio",
                path=path,
                fix="Pass an audio file (wav, flac, mp3, m4a) or a video",
            )
        if not container.streams.audio:
            kinds = sorted({stream.type for stream in container.streams}) or ["none"]
            raise AvatarError(
                f"has no audio stream (streams: {', '.join(kinds)}); a video recorded without sound cannot "
                "drive the avatar",
                path=path,
                fix="Pass the speech as a separate audio file with --audio",
            )
        yield container, container.streams.audio[0]
    finally:
        container.close()


def _decode_frames(
    path: Path, container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> Iterator[av.AudioFrame]:
    damaged_packets = 0
    decoded_any = False
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                damaged_packets += 1
                continue
            for frame in frames:
                decoded_any = True
                yield frame
    except av.error.FFmpegError as error:
        if not decoded_any:
            raise AvatarError(
                f"its audio could not be decoded ({_reason(error)})", path=path, fix=_CONVERT_FIX
            ) from error
        _log.warning(
            "%s: reading stopped at a damaged part (%s); using the audio before it", path, _reason(error)
        )
    if damaged_packets:
        _log.warning("%s: skipped %d damaged audio packet(s)", path, damaged_packets)


def _mean_of_channels(frame: av.AudioFrame) -> np.ndarray:
    planes = frame.to_ndarray()  # [C, n] float32 ("fltp")
    return planes[0].copy() if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32)


def _no_samples_error(path: Path) -> AvatarError:
    return AvatarError(
        "its audio stream decodes to zero samples (empty or damaged)",
        path=path,
        fix="Pass a recording with sound in it; check it plays in a media player",
    )


def _reason(error: av.error.FFmpegError) -> str:
    return getattr(error, "strerror", None) or str(error)
