"""VideoWriter: what it writes reads back with the right frames, size, rate and soundtrack; failures leave nothing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avatar.media.video_writer import VideoWriter


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Flat frames whose colour changes with the index, so decoded frames can be matched to written ones."""
    return [
        np.full((height, width, 3), (8 * i % 256, 128, 255 - 8 * i % 256), np.uint8) for i in range(count)
    ]


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _write(path: Path, frames: list[np.ndarray], fps: int, **kwargs) -> None:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps, width, height, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)


def test_frames_size_rate_and_audio_read_back(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    frames = _frames(30, 48, 64)
    _write(path, frames, fps=15, audio=_tone(2.0, 16000), audio_rate=16000)

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 64, 48)
        assert video.codec_context.pix_fmt == "yuv420p"
        assert video.average_rate == 15
        assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 16000, 1)
        assert abs(float(audio.duration * audio.time_base) - 2.0) <= 1024 / 16000
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 30
    for written, read in zip(frames, decoded):
        assert np.abs(read.astype(int) - written.astype(int)).mean() < 3

    with av.open(str(path)) as container:
        sound = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])
    assert abs(len(sound) - 32000) <= 1024
    assert 0.3 < np.sqrt(np.mean(sound**2)) < 0.4  # a 0.5-amplitude sine has RMS 0.354


def test_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    _write(path, _frames(5, 32, 32), fps=25)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0
        assert sum(1 for _ in container.decode(video=0)) == 5


def test_audio_rate_aac_rejects_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "resampled.mp4"
    _write(path, _frames(10, 32, 32), fps=10, audio=_tone(1.0, 44101), audio_rate=44101)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.rate == 48000
        assert abs(float(audio.duration * audio.time_base) - 1.0) <= 1024 / 48000


def test_odd_size_and_wrong_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", 25, 63, 48)
    with VideoWriter(tmp_path / "ok.mp4", 25, 64, 48) as writer:
        with pytest.raises(ValueError, match=r"\[48, 64, 3\] uint8"):
            writer.write(np.zeros((48, 64, 3), np.float32))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert not (tmp_path / "odd.mp4").exists()
    assert (tmp_path / "ok.mp4").exists()


def test_error_inside_with_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="render failed"):
        with VideoWriter(path, 25, 32, 32, audio=_tone(1.0, 16000)) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("render failed")
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_file_appears_only_on_close(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    writer = VideoWriter(path, 25, 32, 32)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    assert not path.exists()
    writer.close()
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_no_frames_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 25, 32, 32):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("suffix", "codec", "audio_codec"), [(".webm", "vp9", "opus"), (".mov", "prores", "aac")]
)
def test_alpha_formats_keep_the_alpha_and_the_soundtrack(tmp_path: Path, suffix, codec, audio_codec) -> None:
    from avatar.media.video_reader import rgba_frames

    path = tmp_path / f"alpha{suffix}"
    frames = []
    for i in range(20):
        frame = np.zeros((48, 64, 4), np.uint8)
        frame[..., :3] = (200, 40 + 8 * i, 90)
        frame[8 : 24 + i, 10:50, 3] = 255  # an opaque box that grows
        frame[40:, :, 3] = 128  # and a half-transparent band
        frames.append(frame)
    _write(path, frames, fps=25, audio=_tone(0.8, 16000), audio_rate=16000)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
        assert container.streams.audio[0].codec_context.name == audio_codec
        sound = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])
    assert 0.3 < np.sqrt(np.mean(sound**2)) < 0.4
    decoded = list(rgba_frames(path))
    assert len(decoded) == 20
    for written, read in zip(frames, decoded):
        assert np.abs(read[..., 3].astype(int) - written[..., 3]).mean() < 4
        opaque = written[..., 3] == 255
        assert np.abs(read[..., :3][opaque].astype(int) - written[..., :3][opaque]).mean() < 4
    with pytest.raises(ValueError, match="RGBA"):
        with VideoWriter(tmp_path / "x.webm", 25, 64, 48) as writer:
            writer.write(frames[0][..., :3].copy())
    with pytest.raises(ValueError, match="not .avi"):
        VideoWriter(tmp_path / "x.avi", 25, 64, 48)
