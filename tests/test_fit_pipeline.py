"""`avatar fit`, `render`, `eval` and `demo` end to end on the built-in sample."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avatar.audio.driving import driving_features
from avatar.audio.features import audio_features_for_frames
from avatar.audio.phones import AlignedSpeech
from avatar.audio.sync import speech_loudness
from avatar.cli import main
from avatar.core.errors import AvatarError
from avatar.data.dataset import Dataset
from avatar.drive.articulation import articulation_gain, clip_motion, silence_motion
from avatar.drive.blinks import eye_levels
from avatar.drive.compositor import to_uint8
from avatar.drive.driver import load_fitted
from avatar.drive.opening_transfer import MIN_MEASURED, OpeningTransfer
from avatar.drive.phone_check import PhoneCheck, inner_lip_gap
from avatar.drive.phonetic_mouth import FULL_SHARE, phone_opening
from avatar.drive.video import RenderConfig, drive_with_audio, render_video
from avatar.eval.evaluate import EvalMetrics
from avatar.face.landmarks import MOUTH_AND_JAW, UPPER_EYELIDS
from avatar.face.measures import eye_openness, mouth_openness
from avatar.face.regions import mouth_region
from avatar.media.audio_io import load_audio, save_wav
from avatar.metrics.landmarks import FaceMeshRunner, mouth_opening
from avatar.model.landmark_motion import tracked_motion
from avatar.runs.checkpoint import INDEX_NAME, load_checkpoint
from avatar.runs.record import FitSummary, RunRecord
from avatar.runs.settings import FitConfig
from avatar.sample.speech import synthesize_speech
from avatar.train.trainer import run_fit
from tests.media import read_frames, write_video

REPO = Path(__file__).resolve().parents[1]
EYE_CLOSED_PER_OPEN = 0.85  # closed / open rendered lid gap: 0.72 and 0.69 measured (sample, phone_talker)


def _held_out_mouth_psnr(run: Path, *, silence: bool) -> float:
    """Mouth-region PSNR (dB) of the held-out frames rendered with their own audio, or hearing silence."""
    fitted = load_fitted(run, device="cpu", backend="torch")
    dataset, driver = fitted.dataset, fitted.driver
    if silence:
        signals = fitted.capture_signals()
        signals = replace(signals, audio=torch.zeros_like(torch.as_tensor(signals.audio)))
        signals = fitted.with_predicted_motion(signals)
    else:
        signals = fitted.capture_driving()
    gain = fitted.articulation_gain(signals, dataset.split.val)  # as `avatar eval` renders them
    squared, count = 0.0, 0.0
    for index in dataset.split.val.tolist():
        conditions = signals.conditions([index], window=driver.model.window)
        rendered = fitted.render_capture_frame(conditions, index, dataset.background(), mouth_scale=gain)
        real = dataset.frame(index).astype(np.float32) / 255
        mask = (mouth_region(dataset.tracking.landmarks[index], dataset.size) > 127)[..., None]
        squared += float((np.square(rendered - real) * mask).sum())
        count += 3.0 * float(mask.sum())
    return float(10 * np.log10(count / squared))


@pytest.mark.slow
def test_model_follows_audio_on_held_out_frames(sample_runs):
    run, with_audio = sample_runs["audio"]
    assert with_audio.mouth_open_correlation >= 0.6, with_audio
    own_audio = _held_out_mouth_psnr(run, silence=False)
    assert abs(own_audio - with_audio.psnr_mouth) < 0.05, (own_audio, with_audio.psnr_mouth)
    assert own_audio >= _held_out_mouth_psnr(run, silence=True) + 1.0
    for value in (with_audio.psnr, with_audio.ssim, with_audio.psnr_head_box, with_audio.ssim_head_box):
        assert np.isfinite(value)
    assert np.isfinite(with_audio.lmd_px) and np.isfinite(with_audio.render_fps)
    assert with_audio.video.is_file() and with_audio.plot.is_file()
    run, _ = sample_runs["audio"]
    assert EvalMetrics.read(run / "eval.json") == with_audio
    summary = FitSummary.read(run / "fit_summary.json")
    assert (
        summary.steps == RunRecord.read(run / "run.json").settings.total_steps
        and summary.rasterizer == "torch"
    )
    assert summary.motion_frames > 0 and summary.smiling_frames >= 0


def rendered_eye_openness(
    run: Path, eye_levels_to_render: dict[str, float] | None = None
) -> dict[str, float]:
    """The rendered eye openness (face mesh, lid gap / eye width) of the first held-out frame of `run`, its eye
    signal set to the capture's open and closed levels (or the given ones)."""
    fitted = load_fitted(run, device="cpu", backend="torch")
    dataset, driver = fitted.dataset, fitted.driver
    tracking = dataset.tracking
    if eye_levels_to_render is None:
        valid = tracking.valid
        open_level, closed_level = eye_levels(tracking.eye_openness[valid], tracking.blink[valid])
        eye_levels_to_render = {"open": open_level, "closed": closed_level}
    frame = int(dataset.split.val[0])
    conditions = fitted.capture_signals().conditions([frame], window=driver.model.window)
    viewmat = torch.from_numpy(tracking.viewmats[frame : frame + 1]).float()
    measured = {}
    with FaceMeshRunner() as runner:
        for name, level in eye_levels_to_render.items():
            head = driver.render(replace(conditions, eye=torch.tensor([level])), viewmat)[0]
            points = runner.landmarks(to_uint8(fitted.composite(head, frame, dataset.background())))
            measured[name] = math.nan if points is None else float(eye_openness(points))
    return measured


@pytest.mark.slow
def test_the_rendered_eyes_close_when_the_eye_signal_does(sample_runs):
    run, _ = sample_runs["audio"]
    rig = load_fitted(run, device="cpu", backend="torch").driver.model.deformation.eyelids
    upper_lids_down = rig.slopes[: len(UPPER_EYELIDS), 1]  # metres of +y (down) per unit of eye openness
    assert float(upper_lids_down.mean()) < -0.002, rig.slopes  # the lids close with the signal
    measured = rendered_eye_openness(run)
    assert measured["closed"] < EYE_CLOSED_PER_OPEN * measured["open"], measured


@pytest.mark.slow
def test_a_tracked_closure_renders_closed_and_an_opening_open(sample_runs):
    """The capture's most closed and most open tracked mouth motions, rendered on one held-out frame, read
    back by the face mesh near the capture's own closed and open levels. (On this sample the lips render the
    same with and without `lip_sides`; on real clips sided lips are what lets a tracked closure close.)"""
    run, _ = sample_runs["audio"]
    fitted = load_fitted(run, device="cpu", backend="torch")
    dataset, driver = fitted.dataset, fitted.driver
    tracking = dataset.tracking
    captured = mouth_openness(tracking.landmarks)
    train = dataset.split.train[tracking.valid[dataset.split.train]]
    most_closed, most_open = train[np.argmin(captured[train])], train[np.argmax(captured[train])]
    closed, wide = np.percentile(captured[train], 10), np.percentile(captured[train], 90)
    motion = torch.from_numpy(tracked_motion(tracking, MOUTH_AND_JAW)).float()
    frame = int(dataset.split.val[0])
    conditions = fitted.capture_signals().conditions([frame], window=driver.model.window)
    viewmat = torch.from_numpy(tracking.viewmats[frame : frame + 1]).float()
    rendered = {}
    with FaceMeshRunner() as runner:
        for name, source in (("closed", most_closed), ("open", most_open)):
            shown = replace(conditions, motion=motion[source : source + 1])
            head = driver.render(shown, viewmat)[0]
            points = runner.landmarks(to_uint8(fitted.composite(head, frame, dataset.background())))
            rendered[name] = math.nan if points is None else float(mouth_opening(points))
    levels = {"captured_closed": float(closed), "captured_open": float(wide), **rendered}
    assert rendered["closed"] < closed + 0.25 * (wide - closed), levels
    assert rendered["open"] > closed + 0.6 * (wide - closed), levels


def _mouth_openings(video: Path) -> np.ndarray:
    with FaceMeshRunner() as runner:
        values = [runner.landmarks(frame) for frame in read_frames(video)]
    return np.array([np.nan if points is None else mouth_opening(points) for points in values])


@pytest.mark.slow
def test_render_matches_audio_length_and_silence_keeps_mouth_closed(sample_runs, sample_dataset, tmp_path):
    run, _ = sample_runs["audio"]
    speech = tmp_path / "speech.flac"
    with av.open(str(speech), "w") as container:  # a 44.1 kHz stereo flac: resampled and downmixed
        stream = container.add_stream("flac", rate=44100)
        stream.layout = "stereo"
        audio = synthesize_speech(3.0, 44100, seed=3).audio
        samples = (np.stack([audio, audio]) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    silence = tmp_path / "silence.wav"
    save_wav(silence, np.zeros(16000 * 3, np.float32), 16000)
    speaking = render_video(RenderConfig(run=run, audio=speech, out=tmp_path / "speech.mp4", progress=False))
    silent = render_video(RenderConfig(run=run, audio=silence, out=tmp_path / "silence.mp4", progress=False))
    assert speaking.frames == silent.frames == 75
    with av.open(str(tmp_path / "speech.mp4")) as container:
        assert container.streams.video[0].frames == 75
        audio_stream = container.streams.audio[0]
        assert abs(float(audio_stream.duration * audio_stream.time_base) - 3.0) < 0.1
    open_speaking = _mouth_openings(tmp_path / "speech.mp4")
    open_silent = _mouth_openings(tmp_path / "silence.mp4")
    # The captured clip's own closed and open mouth, in the same measure (inner-lip gap / mouth width).
    captured = mouth_openness(Dataset(sample_dataset[0]).tracking.landmarks)
    closed, wide = np.percentile(captured, 10), np.percentile(captured, 90)
    barely_open = closed + 0.25 * (wide - closed)
    assert np.nanmax(open_silent) < barely_open  # silence: the mouth stays at the closed level
    assert np.nanmax(open_speaking) > barely_open  # speech opens it
    assert np.nanstd(open_speaking) > 1.5 * np.nanstd(open_silent)


@pytest.mark.slow
def test_render_errors_name_the_file(sample_runs, tmp_path, capsys):
    run, _ = sample_runs["audio"]
    silent_video = write_video(tmp_path / "no_audio.mp4", np.zeros((10, 32, 32, 3), np.uint8))
    assert main(["render", str(run), "--audio", str(silent_video), "--out", str(tmp_path / "x.mp4")]) == 2
    error = capsys.readouterr().err
    assert str(silent_video) in error and "no audio" in error
    assert not (tmp_path / "x.mp4").exists()
    broken = tmp_path / "broken_run"
    shutil.copytree(run, broken)
    for tensors in broken.glob("checkpoint_*.safetensors"):
        tensors.write_bytes(tensors.read_bytes()[:100])
    assert main(["render", str(broken), "--audio", str(silent_video), "--out", str(tmp_path / "y.mp4")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert (
        main(["render", str(tmp_path), "--audio", str(silent_video), "--out", str(tmp_path / "z.mp4")]) == 2
    )
    assert "not an `avatar fit` run" in capsys.readouterr().err


def test_dataset_of_another_format_version_is_refused(sample_dataset, tmp_path):
    dataset, _ = sample_dataset
    copy = tmp_path / "old_dataset"
    shutil.copytree(dataset, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    manifest["version"] = 99
    (copy / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(AvatarError, match="format version 99"):
        run_fit(FitConfig(dataset=copy, out=tmp_path / "run", preset="tiny", progress=False))


@pytest.mark.slow
def test_killed_fit_resumes_to_the_same_step_count(sample_dataset, tmp_path):
    dataset, _ = sample_dataset
    out = tmp_path / "run"
    command = [sys.executable, "-m", "avatar", "fit", str(dataset), "--out", str(out), "--preset", "tiny"]
    command += ["--steps", "120", "--resolution", "48", "--device", "cpu", "--no-progress"]
    # the fit gets this worker's share of the cores (conftest): a thread per core beside another worker's
    # threads oversubscribes them, and it once ran six times slower than alone
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    # the index is written after the checkpoint it names: a kill between the two leaves no checkpoint yet
    while time.time() < deadline and not (out / INDEX_NAME).is_file() and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = load_checkpoint(out)
    assert 0 < first.step < 120 and not first.meta["finished"]
    result = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    final = load_checkpoint(out)
    assert final.step == 120 and final.meta["finished"]
    with open(out / "train_log.csv") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file)]
    assert steps[-1] == 120 and steps == sorted(steps)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--steps", "30", "--no-progress"]) == 0
    output = capsys.readouterr().out
    assert "video:" in output and "rasterizer torch, hash grid HashGridEncoding" in output
    video = tmp_path / "demo" / "driven.mp4"
    with av.open(str(video)) as container:
        assert container.streams.video[0].frames == 200 and container.streams.audio


@pytest.mark.slow
def test_mouth_scale_scales_the_spread_and_keeps_closures_closed(
    sample_runs, sample_dataset, tmp_path, monkeypatch
):
    run, _ = sample_runs["audio"]
    speech = tmp_path / "speech.wav"
    save_wav(speech, synthesize_speech(3.0, 16000, seed=5).audio, 16000)
    openings = {}
    for scale in (0.5, 1.0, 1.5):
        out = tmp_path / f"scale_{scale}.mp4"
        config = RenderConfig(  # the scale alone: matching the amplitude multiplies it (the same mechanism)
            run=run,
            audio=speech,
            out=out,
            mouth_scale=scale,
            match_amplitude=False,
            blink="none",
            progress=False,
        )
        render_video(config)
        openings[scale] = _mouth_openings(out)
    spread = {scale: np.nanstd(values) for scale, values in openings.items()}
    # roughly the factor: the inner-lip gap grows faster than the articulation once the lips part
    # (measured 0.48 / 1.48 and 0.55 / 1.87 in two fits of the sample)
    assert 0.3 < spread[0.5] / spread[1.0] < 0.7 and 1.25 < spread[1.5] / spread[1.0] < 2.1, spread
    captured = mouth_openness(Dataset(sample_dataset[0]).tracking.landmarks)
    closed, wide = np.percentile(captured, 10), np.percentile(captured, 90)
    closures = openings[1.0] <= closed + 0.1 * (wide - closed)  # frames the fitted mouth closes
    assert closures.sum() >= 5
    for scale in (0.5, 1.5):  # the closed frames stay closed, within the face mesh's jitter
        assert np.nanmedian(openings[scale][closures]) < closed + 0.15 * (wide - closed)
        # the face mesh misreads a rendered frame now and then (one at 0.30 of the range in a CI run, at most
        # 0.19 in two fits with other seeds): at most one closure frame in ten, and one in any case, reads open
        opened = openings[scale][closures] >= closed + 0.3 * (wide - closed)
        assert opened.sum() <= max(1, 0.1 * closures.sum()), openings[scale][closures]
    with pytest.raises(AvatarError, match="--mouth-scale"):
        render_video(RenderConfig(run=run, audio=speech, out=tmp_path / "x.mp4", mouth_scale=-1.0))
    fitted = load_fitted(run, device="cpu", backend="torch")
    fitted.__dict__["phone_check"] = PhoneCheck(fitted.step, 50, 0.8, 0.8)  # heard (the check: its own test)
    # the learned mouth as it is (the phonetic share has its own test)
    monkeypatch.setattr("avatar.drive.phonetic_mouth.phonetic_share", lambda learned_auc: 0.0)
    matched = drive_with_audio(fitted, speech)
    assert matched.articulation_gain != 1.0  # 3 s of new speech, measured and matched to the capture
    predicted = replace(matched.signals, motion=None)  # the clip renders its predicted motion, smoothed
    smoothed = clip_motion(fitted.driver.model, predicted, fitted.dataset.fps)
    np.testing.assert_allclose(np.asarray(matched.signals.motion), smoothed, atol=1e-7)
    assert drive_with_audio(fitted, speech, match_amplitude=False).articulation_gain == 1.0
    n_mels = fitted.record.audio_features.n_mels
    voice_only = drive_with_audio(fitted, speech, phones=False)
    assert np.asarray(matched.signals.audio)[..., n_mels:].any()
    assert not np.asarray(voice_only.signals.audio)[..., n_mels:].any()
    np.testing.assert_array_equal(
        np.asarray(voice_only.signals.audio)[..., :n_mels], np.asarray(matched.signals.audio)[..., :n_mels]
    )
    assert voice_only.speech.phones == matched.speech.phones  # still there to score the render


@pytest.mark.slow
def test_the_opening_transfer_is_measured_once_and_corrects_the_gain(sample_runs, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(sample_runs["audio"][0], run)
    (run / "opening_transfer.json").unlink(missing_ok=True)  # the fixture's eval measured it already
    fitted = load_fitted(run, device="cpu", backend="torch")
    transfer = fitted.opening_transfer
    assert transfer.frames >= MIN_MEASURED and transfer.checkpoint_step == fitted.step
    assert 0.3 < transfer.transfer < 1.5, transfer  # the rendered mouth moves, about as much as the real one
    assert OpeningTransfer.read(run / "opening_transfer.json") == transfer

    def not_again(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr("avatar.drive.driver.measure_opening_transfer", not_again)
    again = load_fitted(run, device="cpu", backend="torch")
    assert again.opening_transfer == transfer
    signals = again.capture_signals()
    uncorrected = articulation_gain(again.driver.model, signals, again.articulation_level, again.dataset.fps)
    assert again.articulation_gain(signals) == pytest.approx(uncorrected * transfer.correction)


def _capture_motion(fitted, phones: bool) -> np.ndarray:
    """The motion of the capture's own audio predicted with or without its phones, as a render smooths it."""
    speech = fitted.dataset.speech if phones else AlignedSpeech(None, "the voice alone")
    signals = fitted.record.capture_signals(fitted.dataset, speech=speech)
    return clip_motion(fitted.driver.model, signals, fitted.dataset.fps)


def _new_audio_motion(fitted, clip, audio_path: Path, phones: bool) -> np.ndarray:
    """The motion of a driven clip's audio predicted with or without its phones, as a render smooths it."""
    config, fps = fitted.record.audio_features, fitted.dataset.fps
    windows = audio_features_for_frames(load_audio(audio_path, config.sample_rate), clip.count, fps, config)
    heard = clip.speech if phones else AlignedSpeech(None, "the voice alone")
    features = driving_features(windows, fps, config, fitted.record.audio_normalization, speech=heard)
    return clip_motion(fitted.driver.model, replace(clip.signals, audio=features, motion=None), fps)


@pytest.mark.slow
def test_the_phone_check_is_kept_and_a_failed_one_silences_the_captures_phones_and_halves_new_audios(
    sample_runs, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(sample_runs["audio"][0], run)
    (run / "phone_check.json").unlink(missing_ok=True)  # the fixture's eval made it already
    # the learned mouth as it is, whether or not it follows the phones (the phonetic share has its own test)
    monkeypatch.setattr("avatar.drive.phonetic_mouth.phonetic_share", lambda learned_auc: 0.0)
    fitted = load_fitted(run, device="cpu", backend="torch")
    check = fitted.phone_check
    val = fitted.dataset.split.val
    assert check.checkpoint_step == fitted.step and check.frames == fitted.dataset.tracking.valid[val].sum()
    assert PhoneCheck.read(run / "phone_check.json") == check
    assert check.correlation_without_phones > 0.5, (
        check
    )  # the voice alone follows the sample's held-out mouth
    assert -1 <= check.correlation_with_phones <= 1

    def not_again(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr("avatar.drive.driver.measure_phone_check", not_again)
    n_mels = fitted.record.audio_features.n_mels
    speech = tmp_path / "speech.wav"
    save_wav(speech, synthesize_speech(3.0, 16000, seed=5).audio, 16000)
    for heard in (True, False):
        PhoneCheck(fitted.step, 50, 0.8 if heard else 0.2, 0.8).write(run / "phone_check.json")
        again = load_fitted(run, device="cpu", backend="torch")
        assert again.uses_phones == heard
        capture_phones = np.asarray(again.capture_signals().audio)[..., n_mels:]
        clip = drive_with_audio(again, speech)
        assert capture_phones.any() == heard and np.asarray(clip.signals.audio)[..., n_mels:].any() == heard
        np.testing.assert_allclose(again.capture_driving().motion, _capture_motion(again, heard), atol=1e-6)
        assert clip.speech.phones  # still there to score the render

        # new audio's mouth: from its phones where the check passed, else half from them, half from the voice
        with_phones, voice_alone = (
            _new_audio_motion(again, clip, speech, True),
            _new_audio_motion(again, clip, speech, False),
        )
        expected = with_phones if heard else 0.5 * (with_phones + voice_alone)
        np.testing.assert_allclose(clip.signals.motion, expected, atol=1e-6)
        assert np.abs(with_phones - voice_alone).max() > 1e-4  # the phones matter to this mouth
        result = render_video(
            RenderConfig(run=run, audio=speech, out=tmp_path / f"{heard}.mp4", progress=False)
        )
        assert (result.phones_note is None) == heard
        if not heard:
            assert "the capture's are off" in result.phones_note and "0.20" in result.phones_note

    # the voice alone better, by less than the margin: the capture's own mouth moves half by each, and the rest
    # of the model and new audio still hear the phones
    PhoneCheck(fitted.step, 50, 0.7, 0.78).write(run / "phone_check.json")
    between = load_fitted(run, device="cpu", backend="torch")
    driving = between.capture_driving()
    with_phones, voice_alone = _capture_motion(between, True), _capture_motion(between, False)
    np.testing.assert_allclose(driving.motion, 0.5 * (with_phones + voice_alone), atol=1e-6)
    assert np.abs(with_phones - voice_alone).max() > 1e-4
    assert between.uses_phones and np.asarray(driving.audio)[..., n_mels:].any()
    assert "half by them, half by the voice" in between.phone_check.summary()


@pytest.mark.slow
def test_new_audio_whose_learned_mouth_misses_its_phones_gets_the_phonetic_mouth(
    sample_runs, tmp_path, monkeypatch
):
    run = sample_runs["audio"][0]
    speech = tmp_path / "speech.wav"
    save_wav(speech, synthesize_speech(3.0, 16000, seed=5).audio, 16000)
    monkeypatch.setattr("avatar.drive.phonetic_mouth.phonetic_share", lambda learned_auc: 0.0)
    fitted = load_fitted(run, device="cpu", backend="torch")
    learned = drive_with_audio(fitted, speech)
    assert learned.phonetic is not None and learned.phonetic.share == 0.0

    monkeypatch.setattr("avatar.drive.phonetic_mouth.phonetic_share", lambda learned_auc: FULL_SHARE)
    clip = drive_with_audio(fitted, speech)
    assert clip.phonetic.share == FULL_SHARE and clip.phonetic.learned_auc == learned.phonetic.learned_auc
    assert clip.articulation_gain == learned.articulation_gain  # matched on the learned motion
    # the person's opening, from the capture's tracked speech frames: one metre of gap per metre
    person = fitted.mouth_opening
    assert 0.5e-3 < person.gap_spread < 20e-3
    assert inner_lip_gap(person.mode[None])[0] == pytest.approx(1.0, abs=1e-4)
    rest = silence_motion(fitted.driver.model, clip.signals)
    log_mel = np.asarray(clip.signals.audio)[..., : fitted.record.audio_features.n_mels]
    speech_frames = np.flatnonzero(speech_loudness(log_mel) >= fitted.articulation_level.speech_loudness)
    assert 0 < len(speech_frames) < clip.count
    # rendered (about rest, times the gain), the gap varies over the speech as far as the person's, or as the
    # learned mouth's where that is wider
    gain, correction = clip.articulation_gain, fitted.opening_transfer.correction
    gap = gain * inner_lip_gap(np.asarray(clip.signals.motion) - rest)
    learned_gap = gain * inner_lip_gap(np.asarray(learned.signals.motion) - rest)
    widest = max(np.std(learned_gap[speech_frames]), person.gap_spread * correction)
    assert np.std(gap[speech_frames]) == pytest.approx(widest, rel=1e-3)
    # and it follows the phones' opening more than the learned mouth did
    opening = phone_opening(clip.speech.phones, clip.count, fitted.dataset.fps)
    assert np.corrcoef(gap, opening)[0, 1] > np.corrcoef(learned_gap, opening)[0, 1]
    result = render_video(RenderConfig(run=run, audio=speech, out=tmp_path / "clip.mp4", progress=False))
    assert result.mouth_note == clip.phonetic.summary() and "50% phonetic" in result.mouth_note
