"""The viseme lip-sync score (avatar.metrics.lipsync) and the phone alignment it reads (avatar.audio.phones).

The real-media tests score the Obama clip's own mouth (mediapipe's face mesh, every frame) against the phones of
its own audio, of that audio shifted by 12 frames and of another speech by the same speaker. Measured with
pocketsphinx 5.1.1: own audio 0.91 at lag -6 (the mouth leads the sound by 240 ms, as `avatar.audio.sync`
finds) and 0.34 at lag 0; at that lag -6, the audio 12 frames late 0.50, 12 frames early 0.52, the other
speech 0.65. Over rotations of the clip's own phones the AUC at a fixed lag is 0.50 +- 0.09 (only ~20 closure
frames in 20 s), which sets the tolerances of the "ignores the sound" checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from avatar.audio.phones import ARPABET, SILENCE, PhoneSegment, _chunks, align_phones
from avatar.core.errors import AvatarError
from avatar.metrics.lipsync import (
    CLOSURES,
    OPEN_VOWELS,
    LipSyncScore,
    lip_sync_score,
    spread_ratio,
    viseme_auc,
    viseme_frames,
)

FPS = 25.0
VIDEO = "obama_address_20s.mp4"


def _needs_pocketsphinx() -> None:
    pytest.importorskip("pocketsphinx", reason='phone alignment needs `pip install "pocketsphinx>=5,<6"`')


# --- viseme_frames / viseme_auc / lip_sync_score on synthetic data -------------------------------------------


def _seg(phone: str, start_frame: float, end_frame: float) -> PhoneSegment:
    return PhoneSegment(phone, start_frame / FPS, end_frame / FPS)


def test_viseme_frames_take_frame_centres_in_long_open_vowels_and_in_closures():
    phones = [
        _seg("SIL", 0, 2),
        _seg("AA1", 2, 5),  # 120 ms, stress digit ignored: frames 2, 3, 4
        _seg("AH", 5, 6),  # 40 ms, shorter than min_vowel_s: not open
        _seg("m", 6, 7.4),  # lower case: frame 6 (centre 6.5 inside), frame 7 (centre 7.5) outside
        _seg("IY", 7.4, 9),  # a closed vowel: neither group
        _seg("EY", 9, 11),  # frames 9, 10
        _seg("B", 11, 11.5),  # centre 11.5 is the open end: no frame
        _seg("IY", 11.5, 12),  # frame 11
        _seg("P", 12, 13),  # frame 12
        _seg("P", 40, 45),  # beyond the 20 frames: none
    ]
    open_frames, closed_frames = viseme_frames(phones, 20, FPS)
    assert open_frames.tolist() == [2, 3, 4, 9, 10]
    assert closed_frames.tolist() == [6, 12]
    open_frames, _ = viseme_frames(phones, 20, FPS, min_vowel_s=0.03)
    assert open_frames.tolist() == [2, 3, 4, 5, 9, 10]
    assert all(len(a) == 0 for a in viseme_frames([], 20, FPS))
    assert set(OPEN_VOWELS) < set(ARPABET) and set(CLOSURES) < set(ARPABET)


def test_viseme_frames_leave_out_frames_claimed_by_both_groups():
    open_frames, closed_frames = viseme_frames([_seg("AA", 0, 4), _seg("P", 3, 5)], 6, FPS)
    assert open_frames.tolist() == [0, 1, 2] and closed_frames.tolist() == [4]


def test_auc_is_one_for_perfect_separation_zero_reversed_and_half_for_no_difference():
    opening = np.array([0.9, 0.8, 0.7, 0.1, 0.0, 0.2])
    open_frames, closed_frames = np.array([0, 1, 2]), np.array([3, 4, 5])
    assert viseme_auc(opening, open_frames, closed_frames) == 1.0
    assert viseme_auc(opening, closed_frames, open_frames) == 0.0
    assert viseme_auc(np.full(6, 0.3), open_frames, closed_frames) == 0.5
    # 0.5 (tie) + 1 + 0 over 1 * 3 pairs, then against a rank-sum reference on random data
    assert viseme_auc(np.array([0.5, 0.5, 0.2, 0.9]), np.array([0]), np.array([1, 2, 3])) == pytest.approx(
        0.5
    )
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, 60).astype(float)  # many ties
    a, b = np.arange(0, 25), np.arange(25, 60)
    expected = np.mean([(x > y) + 0.5 * (x == y) for x in values[a] for y in values[b]])
    assert viseme_auc(values, a, b) == pytest.approx(expected, abs=1e-12)


def test_auc_reads_the_mouth_lag_frames_after_the_phone():
    opening = np.zeros(10)
    opening[[5, 6]] = 1.0  # the mouth opens two frames after the open vowel at frames 3, 4
    open_frames, closed_frames = np.array([3, 4]), np.array([7, 8])
    assert viseme_auc(opening, open_frames, closed_frames, lag=0) == 0.5
    assert viseme_auc(opening, open_frames, closed_frames, lag=2) == 1.0  # closures read at 9 (10 dropped)
    assert viseme_auc(opening, open_frames, closed_frames, lag=-3) == 0.25  # 0, 0 against 0, 1
    assert math.isnan(viseme_auc(opening, open_frames, closed_frames, lag=4))  # closures read at 11, 12
    assert math.isnan(viseme_auc(opening, open_frames, closed_frames, lag=-5))  # open frames read at -2, -1
    assert viseme_auc(opening, open_frames, closed_frames, lag=-4) == 0.5  # frame -1 dropped, frame 0 kept


def test_auc_drops_nan_openings_and_is_nan_for_an_empty_group():
    opening = np.array([0.9, np.nan, 0.1, np.nan])
    assert viseme_auc(opening, np.array([0, 1]), np.array([2, 3])) == 1.0
    assert math.isnan(viseme_auc(opening, np.array([1]), np.array([2])))
    assert math.isnan(viseme_auc(opening, np.array([], int), np.array([2])))
    with pytest.raises(ValueError):
        viseme_auc(np.zeros((2, 2)), np.array([0]), np.array([1]))


def _syllables(frames: int, lead: int, seed: int) -> tuple[np.ndarray, list[PhoneSegment]]:
    """A mouth that opens on each open vowel and shuts on each closure, `lead` frames before the sound."""
    rng = np.random.default_rng(seed)
    phones, opening = [], np.full(frames, 0.2)
    frame = 0
    while frame < frames - 6:
        vowel, closure = int(rng.integers(2, 5)), int(rng.integers(1, 3))
        phones += [_seg("AE", frame, frame + vowel), _seg("B", frame + vowel, frame + vowel + closure)]
        for i in range(frame, frame + vowel):
            if 0 <= i - lead < frames:
                opening[i - lead] = 0.6 + 0.1 * rng.random()
        for i in range(frame + vowel, frame + vowel + closure):
            if 0 <= i - lead < frames:
                opening[i - lead] = 0.05 * rng.random()
        frame += vowel + closure + int(rng.integers(0, 3))
    return opening, phones


def test_score_finds_the_lag_of_a_mouth_that_leads_its_sound():
    opening, phones = _syllables(500, lead=5, seed=3)
    score = lip_sync_score(opening, phones, FPS)
    assert isinstance(score, LipSyncScore)
    assert score.best_lag == -5 and score.auc_best_lag == 1.0
    assert score.auc_lag0 < 0.9
    assert score.lags.tolist() == list(range(-8, 9)) and score.auc_by_lag[score.lags == -5] == 1.0
    assert score.open_frames == int((score.viseme == 1).sum()) > 100
    assert score.closed_frames == int((score.viseme == -1).sum()) > 50
    assert score.mouth_spread == pytest.approx(np.std(opening))
    np.testing.assert_array_equal(score.mouth_opening, opening)
    on_time = lip_sync_score(*_syllables(500, lead=0, seed=3), FPS)
    assert on_time.best_lag == 0 and on_time.auc_lag0 == on_time.auc_best_lag == 1.0


def test_score_of_a_still_mouth_or_without_phones():
    _, phones = _syllables(200, lead=0, seed=1)
    still = lip_sync_score(np.full(200, 0.3), phones, FPS, max_lag=3)
    assert (
        still.auc_lag0 == 0.5 and still.best_lag == 0 and still.mouth_spread == pytest.approx(0.0)
    )  # ties: smallest |lag|
    empty = lip_sync_score(np.full(200, 0.3), [], FPS, max_lag=3)
    assert math.isnan(empty.auc_lag0) and math.isnan(empty.auc_best_lag) and empty.best_lag == 0
    assert empty.open_frames == empty.closed_frames == 0
    assert math.isnan(lip_sync_score(np.full(5, np.nan), phones, FPS).mouth_spread)


def test_spread_ratio():
    real = np.array([0.0, 0.2, 0.4, np.nan])
    assert spread_ratio(real / 2, real) == pytest.approx(0.5)
    assert spread_ratio(real, real) == pytest.approx(1.0)
    assert math.isnan(spread_ratio(real, np.full(4, 0.3)))
    assert math.isnan(spread_ratio(np.full(3, np.nan), real))


# --- align_phones ---------------------------------------------------------------------------------------------


def test_chunks_are_cut_in_pauses_near_chunk_s():
    rng = np.random.default_rng(0)
    sr = 16000
    pieces, pauses = [], []
    for i in range(12):  # 1.7 s of "speech" then a 0.4 s pause, 25.2 s in all
        pieces += [rng.normal(0, 0.2, int(1.7 * sr)), np.zeros(int(0.4 * sr))]
        pauses.append((2.1 * i + 1.7, 2.1 * i + 2.1))
    samples = np.concatenate(pieces).astype(np.float32)
    ranges = list(_chunks(samples, chunk_s=5.0))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(samples)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for start, stop in ranges[:-1]:
        assert 3.75 <= (stop - start) / sr <= 6.25
        assert any(lo + 0.05 < stop / sr < hi - 0.05 for lo, hi in pauses), stop / sr
    assert list(_chunks(samples, chunk_s=30.0)) == [(0, len(samples))]


@pytest.mark.parametrize("kind", ["digital silence", "white noise", "tone", "too short"])
def test_align_phones_refuses_audio_without_speech(kind):
    _needs_pocketsphinx()
    rng = np.random.default_rng(0)
    sr = 16000
    audio = {
        "digital silence": np.zeros(3 * sr, np.float32),  # pocketsphinx alone hears "dog" in this
        "white noise": rng.normal(0, 0.1, 3 * sr).astype(np.float32),
        "tone": 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * sr) / sr),
        "too short": rng.normal(0, 0.1, 800),
    }[kind]
    with pytest.raises(AvatarError, match="Pass English speech"):
        align_phones(audio, sr)


def test_align_phones_checks_its_arguments():
    with pytest.raises(ValueError):
        align_phones(np.zeros((2, 16000)), 16000)
    with pytest.raises(ValueError):
        align_phones(np.zeros(16000), 0)
    with pytest.raises(ValueError):
        align_phones(np.zeros(16000), 16000, chunk_s=0)


def _assert_plausible(segments: list[PhoneSegment], duration_s: float) -> None:
    names = [s.phone for s in segments]
    assert set(names) <= set(ARPABET) | {SILENCE}
    assert set(names) & set(CLOSURES) and set(names) & set(OPEN_VOWELS)
    starts = np.array([s.start_s for s in segments])
    ends = np.array([s.end_s for s in segments])
    assert (ends > starts).all() and (np.diff(starts) > 0).all()
    np.testing.assert_allclose(starts[1:], ends[:-1], atol=1e-9)  # contiguous: each starts where one ends
    assert starts[0] == 0 and ends[-1] == pytest.approx(duration_s, abs=1e-6)  # tiles the clip
    assert sum(s.duration_s for s in segments if s.phone != SILENCE) > 0.5 * duration_s
    assert not any(a == b == SILENCE for a, b in zip(names, names[1:]))


@pytest.mark.shared_data
def test_align_phones_of_a_short_real_speech(shared_data):
    """LJ001-0001 (22.05 kHz, resampled): "Printing, in the only sense with which we are at present concerned,
    differs from most if not from all the arts and crafts represented in the Exhibition"."""
    _needs_pocketsphinx()
    from avatar.media.audio_io import load_audio

    audio = load_audio(shared_data / "ljspeech_LJ001-0001.wav", 22050)
    segments = align_phones(audio, 22050)
    _assert_plausible(segments, len(audio) / 22050)
    names = [s.phone for s in segments]
    assert 80 <= len([n for n in names if n != SILENCE]) <= 150  # about 100 phones in the sentence
    assert names.count("M") >= 2  # "from most", "from all"
    assert align_phones(audio, 22050) == segments  # deterministic (pocketsphinx dithers with a fixed seed)


# --- the Obama clip: its own mouth against its own and other audio ---------------------------------------------


@pytest.fixture(scope="module")
def obama_mouth(shared_data) -> np.ndarray:
    """[500] mouth opening of every frame of the Obama clip (mediapipe, once per module)."""
    import av

    from avatar.metrics.landmarks import FaceMeshRunner, mouth_opening

    values = []
    with av.open(str(shared_data / VIDEO)) as container, FaceMeshRunner() as runner:
        stream = container.streams.video[0]
        assert stream.average_rate == 25 and (stream.width, stream.height) == (450, 450)
        for frame in container.decode(stream):
            landmarks = runner.landmarks(frame.to_ndarray(format="rgb24"))
            values.append(math.nan if landmarks is None else mouth_opening(landmarks))
    return np.asarray(values)


@pytest.fixture(scope="module")
def obama_audio(shared_data) -> np.ndarray:
    """[S] the clip's audio at 16 kHz."""
    from avatar.media.audio_io import load_audio

    return load_audio(shared_data / VIDEO, 16000)


@pytest.fixture(scope="module")
def obama_phones(obama_audio) -> list[PhoneSegment]:
    _needs_pocketsphinx()
    return align_phones(obama_audio, 16000)


def _shifted(phones: list[PhoneSegment], frames: int) -> list[PhoneSegment]:
    return [PhoneSegment(p.phone, p.start_s + frames / FPS, p.end_s + frames / FPS) for p in phones]


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_mouth_follows_its_own_phones_and_not_shifted_ones(obama_mouth, obama_audio, obama_phones):
    assert len(obama_mouth) == 500 and np.isfinite(obama_mouth).all()
    _assert_plausible(obama_phones, len(obama_audio) / 16000)
    own = lip_sync_score(obama_mouth, obama_phones, FPS)
    assert own.open_frames >= 30 and own.closed_frames >= 10
    assert own.auc_best_lag >= 0.8
    assert -8 <= own.best_lag <= -4  # the mouth leads its sound (about 6 frames here)
    assert own.auc_lag0 < own.auc_best_lag - 0.3
    for frames in (12, -12):  # the audio 12 frames late / early, read at the clip's own lag
        shifted = lip_sync_score(obama_mouth, _shifted(obama_phones, frames), FPS)
        at_own_lag = shifted.auc_by_lag[shifted.lags == own.best_lag][0]
        assert abs(at_own_lag - 0.5) <= 0.15, (frames, at_own_lag)
    late = lip_sync_score(obama_mouth, _shifted(obama_phones, 12), FPS)
    assert late.auc_best_lag < 0.7  # 18 frames late: no lag in the search brings it back


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_mouth_does_not_follow_another_speech(shared_data, obama_mouth, obama_phones):
    from avatar.media.audio_io import load_audio

    own = lip_sync_score(obama_mouth, obama_phones, FPS)
    other_audio = load_audio(shared_data / "obama_speech_24s.wav", 16000)[: 20 * 16000]
    other = lip_sync_score(obama_mouth, align_phones(other_audio, 16000), FPS)
    at_own_lag = other.auc_by_lag[other.lags == own.best_lag][0]
    # 0.65 measured: the far edge of chance (0.50 +- 0.09 at a fixed lag), well below the own audio's 0.91
    assert abs(at_own_lag - 0.5) <= 0.2
    assert abs(other.auc_lag0 - 0.5) <= 0.15
    assert at_own_lag < own.auc_best_lag - 0.2


@pytest.mark.shared_data
@pytest.mark.slow
def test_chunked_alignment_gives_the_same_score(obama_mouth, obama_audio, obama_phones):
    """5 s chunks (three cuts in 20 s of speech) align as well as one piece, with times offset to the clip."""
    chunked = align_phones(obama_audio, 16000, chunk_s=5.0)
    _assert_plausible(chunked, len(obama_audio) / 16000)
    score = lip_sync_score(obama_mouth, chunked, FPS)
    assert score.auc_best_lag >= 0.8 and -8 <= score.best_lag <= -4
    spoken = [s for s in obama_phones if s.phone != SILENCE]
    assert abs(len([s for s in chunked if s.phone != SILENCE]) - len(spoken)) <= 0.15 * len(spoken)
