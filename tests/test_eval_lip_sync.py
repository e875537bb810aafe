"""`avatar eval`'s lip-sync scores: the held-out frames, the capture's own video, and new driving speech."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from avatar.audio.phones import AlignedSpeech, align_speech
from avatar.cli import main
from avatar.eval.evaluate import DrivenEvalMetrics, EvalConfig, evaluate
from avatar.eval.lip_sync import auc_text, lip_sync_plot, score
from avatar.media.audio_io import load_audio, save_wav
from avatar.metrics.lipsync import lip_sync_score

pytest.importorskip("pocketsphinx")


def test_unalignable_audio_is_a_note_not_a_crash():
    speech = align_speech(np.zeros(16000 * 2, np.float32), 16000)
    assert speech.phones is None and speech.note
    assert score(np.zeros(50), speech, 25.0) is None


def test_phones_are_counted_from_the_first_frame():
    from avatar.audio.phones import PhoneSegment

    speech = AlignedSpeech((PhoneSegment("AA", 2.0, 2.2), PhoneSegment("M", 2.2, 2.3)), None)
    shifted = speech.from_frame(50, 25.0)
    assert shifted[0].start_s == pytest.approx(0.0) and shifted[1].end_s == pytest.approx(0.3)


def test_a_score_without_closure_frames_says_so_instead_of_nan(tmp_path):
    from avatar.audio.phones import PhoneSegment

    opening = np.r_[np.zeros(10), np.ones(10), np.zeros(30)]
    vowel_only = lip_sync_score(opening, [PhoneSegment("AA", 0.4, 0.8)], 25.0)  # as 2 s of held-out speech
    text = auc_text(vowel_only.auc_lag0, vowel_only.auc_best_lag, vowel_only.best_lag)
    assert text == "no viseme AUC: it needs both open-vowel and closure frames"
    lip_sync_plot(tmp_path / "lip.png", vowel_only, 25.0, "held-out")
    assert (tmp_path / "lip.png").stat().st_size > 0

    both = lip_sync_score(opening, [PhoneSegment("M", 0.0, 0.4), PhoneSegment("AA", 0.4, 0.8)], 25.0)
    text = auc_text(both.auc_lag0, both.auc_best_lag, both.best_lag)
    assert text == "viseme AUC 1.000 at lag 0, 1.000 at lag +0"


@pytest.mark.slow
@pytest.mark.shared_data
def test_eval_scores_new_speech_and_the_capture_reference(sample_runs, shared_data, tmp_path, capsys):
    run, held_out = sample_runs["audio"]
    # the sample speaks synthetic babble: aligned to some phones, or refused with a note
    assert (held_out.lip_sync_reference is None) == (held_out.lip_sync_note is not None)
    speech = tmp_path / "lj.wav"
    audio = load_audio(shared_data / "ljspeech_LJ001-0001.wav", 16000)[: 16000 * 4]
    save_wav(speech, audio, 16000)
    driven = tmp_path / "driven.json"
    assert main(["eval", str(run), "--json", str(driven), "--audio", str(speech), "--no-progress"]) == 0
    assert "viseme AUC" in capsys.readouterr().out
    metrics = DrivenEvalMetrics.read(driven)
    assert metrics.frames == 100 and metrics.video.is_file() and metrics.plot.is_file()
    assert (
        metrics.lip_sync is not None
        and metrics.lip_sync.open_frames > 0
        and metrics.lip_sync.closed_frames > 0
    )
    assert 0.0 <= metrics.lip_sync.auc_lag0 <= 1.0 and metrics.lip_sync.spread_ratio > 0
    assert metrics.phones is None

    # the same speech scored against given phones (as for another language): those 12 frames later
    aligned = align_speech(audio, 16000)
    shifted = [
        {"phone": p.phone, "start_s": p.start_s + 0.48, "end_s": p.end_s + 0.48} for p in aligned.phones
    ]
    phone_file = tmp_path / "phones.json"
    phone_file.write_text(json.dumps(shifted), encoding="utf-8")
    given = tmp_path / "given.json"
    argv = ["eval", str(run), "--json", str(given), "--audio", str(speech), "--phones", str(phone_file)]
    assert main([*argv, "--no-progress"]) == 0
    assert f"against {phone_file}" in capsys.readouterr().out
    scored = DrivenEvalMetrics.read(given)
    assert scored.phones == phone_file and scored.mouth_open_rendered == metrics.mouth_open_rendered
    opening = np.array([np.nan if v is None else v for v in scored.mouth_open_rendered])
    expected = lip_sync_score(opening, [SimpleNamespace(**p) for p in shifted], 25.0)
    assert scored.lip_sync.open_frames == expected.open_frames
    assert scored.lip_sync.closed_frames == expected.closed_frames
    assert scored.lip_sync.auc_lag0 == pytest.approx(expected.auc_lag0, abs=1e-4)
    assert main(["eval", str(run), "--json", str(given), "--phones", str(phone_file)]) == 2
    assert "--audio" in capsys.readouterr().err
    silent = tmp_path / "silence.wav"
    save_wav(silent, np.zeros(16000 * 2, np.float32), 16000)
    quiet = evaluate(
        EvalConfig(run=run, json=tmp_path / "silent.json", audio=silent, device="cpu", progress=False)
    )
    assert quiet.lip_sync is None and quiet.lip_sync_note
