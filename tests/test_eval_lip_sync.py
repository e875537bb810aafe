"""`avatar eval`'s lip-sync scores: the held-out frames, the capture's own video, and new driving speech."""

from __future__ import annotations

import numpy as np
import pytest

from avatar.audio.phones import AlignedSpeech, align_speech
from avatar.cli import main
from avatar.eval.evaluate import DrivenEvalMetrics, EvalConfig, evaluate
from avatar.eval.lip_sync import score
from avatar.media.audio_io import load_audio, save_wav

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
    silent = tmp_path / "silence.wav"
    save_wav(silent, np.zeros(16000 * 2, np.float32), 16000)
    quiet = evaluate(
        EvalConfig(run=run, json=tmp_path / "silent.json", audio=silent, device="cpu", progress=False)
    )
    assert quiet.lip_sync is None and quiet.lip_sync_note
