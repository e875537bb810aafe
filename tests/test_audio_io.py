from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from avatar.core.errors import AvatarError
from avatar.media.audio_io import audio_duration_seconds, load_audio, save_wav

LOSSLESS = {"wav": "pcm_s16le", "flac": "flac"}
LOSSY = {"mp3": "libmp3lame", "m4a": "aac"}


def _has_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(
        np.float32
    )


def _write_media(
    path: Path,
    channels: np.ndarray | None,  # [C, S] float32, or None for a video without sound
    rate: int,
    codec: str = "pcm_s16le",
    video_seconds: float = 0.0,
) -> Path:
    """Writes audio (C = 1 or 2) with the given codec, optionally muxed with a small H.264 video."""
    with av.open(str(path), "w") as container:  # all streams must exist before the first packet is muxed
        video = container.add_stream("libx264", rate=25) if video_seconds else None
        audio = None
        if channels is not None:
            layout = "mono" if channels.shape[0] == 1 else "stereo"
            audio = container.add_stream(codec, rate=rate, layout=layout)
        if video is not None:
            video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
            for index in range(int(round(video_seconds * 25))):
                frame = av.VideoFrame.from_ndarray(
                    np.full((32, 32, 3), index * 9 % 255, np.uint8), format="rgb24"
                )
                frame.pts = index
                container.mux(video.encode(frame))
            container.mux(video.encode())
        if audio is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, 0
            container.mux(audio.encode(frame))
            container.mux(audio.encode())
    return path


def _peak_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spectrum) * rate / audio.size)


def _sine_amplitude(audio: np.ndarray) -> float:
    middle = audio[audio.size // 4 : 3 * audio.size // 4]  # away from codec and resampler edges
    return float(np.sqrt(2 * np.mean(middle.astype(np.float64) ** 2)))


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("extension", ["wav", "flac", "mp3", "m4a"])
def test_load_audio_resamples_any_format_to_mono(tmp_path, extension, rate, channels):
    codec = {**LOSSLESS, **LOSSY}[extension]
    if not _has_encoder(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    tone = _sine(440.0, 1.5, rate, amplitude=0.5)
    path = _write_media(tmp_path / f"tone.{extension}", np.stack([tone] * channels), rate, codec)

    audio = load_audio(path, 16000)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    # AAC adds its priming and padding frames (up to ~0.04 s) that the m4a muxer does not trim.
    assert 1.5 - 1e-3 <= audio.size / 16000 <= (1.5 + 1e-3 if extension in LOSSLESS else 1.55)
    assert audio_duration_seconds(path) == pytest.approx(audio.size / 16000, abs=2e-3)
    assert _peak_frequency(audio, 16000) == pytest.approx(440.0, abs=1.5)
    assert _sine_amplitude(audio) == pytest.approx(0.5, rel=0.01 if extension in LOSSLESS else 0.1)


@pytest.mark.parametrize("target_rate", [8000, 16000, 22050, 48000])
def test_load_audio_returns_the_requested_rate(tmp_path, target_rate):
    path = _write_media(tmp_path / "tone.flac", _sine(1000.0, 2.0, 44100)[None], 44100, "flac")
    audio = load_audio(path, target_rate)
    assert abs(audio.size - 2 * target_rate) <= 1
    assert _peak_frequency(audio, target_rate) == pytest.approx(1000.0, abs=1.0)
    assert _sine_amplitude(audio) == pytest.approx(0.5, rel=0.01)


def test_stereo_is_downmixed_to_the_mean_of_the_channels(tmp_path):
    left, right = _sine(300.0, 1.0, 48000, 0.6), _sine(300.0, 1.0, 48000, 0.2)
    same_phase = load_audio(_write_media(tmp_path / "same.wav", np.stack([left, right]), 48000))
    assert _sine_amplitude(same_phase) == pytest.approx(0.4, rel=0.01)
    opposite = load_audio(_write_media(tmp_path / "opposite.wav", np.stack([left, -left]), 48000))
    assert np.abs(opposite).max() < 1e-3


@pytest.mark.skipif(not _has_encoder("libopus"), reason="no libopus encoder")
def test_load_audio_reads_ogg_opus(tmp_path):
    path = _write_media(tmp_path / "tone.ogg", _sine(440.0, 1.0, 48000)[None], 48000, "libopus")
    audio = load_audio(path)
    assert audio.size == pytest.approx(16000, abs=16)
    assert _peak_frequency(audio, 16000) == pytest.approx(440.0, abs=1.5)


def test_load_audio_reads_the_sound_of_a_video(tmp_path):
    stereo = np.stack([_sine(660.0, 2.0, 44100), _sine(660.0, 2.0, 44100)])
    path = _write_media(tmp_path / "talk.mp4", stereo, 44100, "aac", video_seconds=2.0)
    audio = load_audio(path)
    assert 2.0 <= audio.size / 16000 <= 2.05
    assert audio_duration_seconds(path) == pytest.approx(audio.size / 16000, abs=2e-3)
    assert _peak_frequency(audio, 16000) == pytest.approx(660.0, abs=1.5)
    assert _sine_amplitude(audio) == pytest.approx(0.5, rel=0.1)


def test_a_truncated_wav_gives_the_audio_before_the_cut(tmp_path):
    whole = _write_media(tmp_path / "whole.wav", _sine(440.0, 2.0, 16000)[None], 16000)
    cut = tmp_path / "cut.wav"
    data = whole.read_bytes()
    samples_start = data.index(b"data") + 8
    cut.write_bytes(data[: samples_start + 16000 * 2])
    assert load_audio(cut).size == pytest.approx(16000, abs=2)


def _assert_user_error(call, path: Path, *words: str) -> None:
    with pytest.raises(AvatarError) as raised:
        call(path)
    message = str(raised.value)
    assert path.name in message and raised.value.fix
    for word in words:
        assert word in message


@pytest.mark.parametrize("call", [load_audio, audio_duration_seconds])
def test_missing_file_and_folder_are_user_errors(tmp_path, call):
    _assert_user_error(call, tmp_path / "speech.wav", "not found")
    _assert_user_error(call, tmp_path, "not a file")


@pytest.mark.parametrize("call", [load_audio, audio_duration_seconds])
@pytest.mark.parametrize(
    "name, content, words",
    [
        ("notes.txt", b"hello world\n" * 100, "is a text file"),  # FFmpeg's tty demuxer opens it as a video
        ("speech.txt", b"this is not audio\n" * 10, "not an audio or video file"),
        ("speech.wav", b"", "not an audio or video file"),
        ("speech.mp3", np.random.default_rng(0).bytes(4000), "not an audio or video file"),
    ],
)
def test_files_that_are_not_media_are_user_errors(tmp_path, call, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    _assert_user_error(call, path, words)


@pytest.mark.parametrize("call", [load_audio, audio_duration_seconds])
def test_truncated_files_are_user_errors(tmp_path, call):
    m4a = _write_media(tmp_path / "whole.m4a", _sine(440.0, 1.0, 44100)[None], 44100, "aac")
    cut_m4a = tmp_path / "cut.m4a"
    cut_m4a.write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 3])  # the index (moov) is at the end
    _assert_user_error(call, cut_m4a, "truncated or corrupt")
    wav = _write_media(tmp_path / "whole.wav", _sine(440.0, 1.0, 16000)[None], 16000)
    cut_wav = tmp_path / "cut.wav"
    cut_wav.write_bytes(wav.read_bytes()[:20])  # inside the header
    _assert_user_error(call, cut_wav, "truncated or corrupt")


@pytest.mark.parametrize("call", [load_audio, audio_duration_seconds])
def test_a_silent_video_is_a_user_error_that_suggests_audio(tmp_path, call):
    path = _write_media(tmp_path / "silent.mp4", None, 0, video_seconds=1.0)
    with pytest.raises(AvatarError, match="no audio stream") as raised:
        call(path)
    assert "--audio" in raised.value.fix and raised.value.path == path


@pytest.mark.parametrize("call", [load_audio, audio_duration_seconds])
def test_audio_with_zero_samples_is_a_user_error(tmp_path, call):
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
    _assert_user_error(call, path, "zero samples")


def test_save_wav_writes_pcm16_mono_that_loads_back(tmp_path):
    audio = _sine(440.0, 1.0, 16000, amplitude=0.9)
    audio[:10] = [1.5, -1.5, 1.0, -1.0, 0.0, 0.5, -0.5, 1e-6, 2.0, -3.0]
    path = tmp_path / "out" / "speech.wav"
    save_wav(path, audio, 16000)
    with wave.open(str(path), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    assert pcm[:10].tolist() == [32767, -32767, 32767, -32767, 0, 16384, -16384, 0, 32767, -32767]
    loaded = load_audio(path, 16000)
    np.testing.assert_allclose(loaded, np.clip(audio, -1, 1), atol=1.5 / 32767)
    assert [p.name for p in path.parent.iterdir()] == ["speech.wav"]


def test_save_wav_replaces_an_existing_file_and_rejects_bad_input(tmp_path):
    path = tmp_path / "speech.wav"
    save_wav(path, np.zeros(8000, np.float32), 8000)
    save_wav(path, np.full(100, 0.25, np.float32), 22050)
    assert audio_duration_seconds(path) == pytest.approx(100 / 22050)
    for bad in (np.zeros((100, 2), np.float32), np.zeros(100, np.int16), np.array([0.0, np.nan])):
        with pytest.raises(ValueError):
            save_wav(path, bad, 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["speech.wav"]


@pytest.mark.shared_data
def test_jfk_flac_at_44k(shared_data):
    path = shared_data / "jfk_inaugural_11s.flac"
    assert audio_duration_seconds(path) == pytest.approx(11.0, abs=0.01)
    audio = load_audio(path, 16000)
    assert audio.size == pytest.approx(11.0 * 16000, abs=16)
    assert 0.02 < np.sqrt(np.mean(audio**2)) < 0.5  # speech, not silence or clipping noise


@pytest.mark.shared_data
def test_obama_wav_at_16k_loads_bit_exact(shared_data):
    path = shared_data / "obama_speech_24s.wav"
    assert audio_duration_seconds(path) == pytest.approx(24.36, abs=0.05)
    with wave.open(str(path), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    audio = load_audio(path, 16000)
    np.testing.assert_allclose(audio, pcm / 32768.0, atol=1e-7)
