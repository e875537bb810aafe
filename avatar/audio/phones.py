"""Phone alignment of English speech with pocketsphinx's built-in en-US models (no downloaded weights).

`align_phones` recognises the words of a clip with pocketsphinx's default acoustic model, language model and
CMU dictionary (all inside the pocketsphinx wheel), then force-aligns those words to the audio to get the
time span of each phone. Phones are the 39 ARPAbet phones of the CMU dictionary without stress digits
(`AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH`).
Silence, and pocketsphinx's noise and filler models (`+NSN+`, `+SPN+`), come back as `"SIL"` segments, and the
segments tile the whole clip: the first starts at 0 s, each starts where the one before it ends, the last ends
at the clip's end, and no two SILs are adjacent.

The words are only a means to the phones: they need not be right (recognition errors replace a word by one
that sounds alike, with mostly the same phones), the timing is what matters.

Long audio is processed in chunks of about `chunk_s` seconds cut at the quietest 0.3 s near each chunk end,
so that words are not cut in two; each chunk is recognised and aligned on its own and its segment times are
offset back to the whole clip. A chunk without recognised words becomes one SIL segment.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from avatar.core.errors import AvatarError

if TYPE_CHECKING:
    from pocketsphinx import Decoder

_log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what pocketsphinx's en-US acoustic model was trained on
SILENCE = "SIL"
ARPABET = "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH".split()

_FRAME_RATE = 100  # pocketsphinx's feature frames per second (its `frate`)
_FILLERS = {"SIL", "+NSN+", "+SPN+"}  # silence, noise and "speech-like noise" models: reported as SIL
_SILENT_RMS = 1e-3  # -60 dBFS: a clip whose loudest 30 ms is below this is silent
_MIN_WORDS = 2  # fewer recognised words than this over the whole clip: nothing to align
_MIN_WORD_FRACTION = 0.1  # words must cover this share of the clip; noise gives a stray word or two
_SEARCH_FRACTION = 0.25  # chunk ends are searched within chunk_s * (1 +- this)
_PAUSE_S = 0.3  # the length of the quiet window a chunk is cut in the middle of
_MAX_GAP_S = (
    0.05  # a shorter gap between aligned phones is closed by the phone before it, a longer one is SIL
)

_FIX = (
    "Pass English speech at least a few words long (e.g. the audio track of the video, "
    "`avatar.media.audio_io.load_audio(path, 16000)`)"
)


@dataclass(frozen=True)
class PhoneSegment:
    """One phone of a clip: an ARPAbet phone without stress digit (e.g. "AA", "P") or "SIL", and its span in
    seconds from the start of the clip (start_s < end_s)."""

    phone: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def align_phones(audio: np.ndarray, sample_rate: int, *, chunk_s: float = 20.0) -> list[PhoneSegment]:
    """The phones of an English speech clip and when each is spoken.

    Args:
        audio: np.ndarray  # [S] mono samples in [-1, 1] (float; int16 is scaled by 1/32768)
        sample_rate: the rate of `audio` in Hz; resampled to 16 kHz when different
        chunk_s: about how long a piece of the clip is recognised at once (cut at a quiet point near it)
    Returns:
        segments: list[PhoneSegment]  # in time order, tiling [0, len(audio) / sample_rate], SIL for silence
    Raises:
        AvatarError: the audio is silent, empty, not speech (no or almost no words recognised), or pocketsphinx
            is not installed.
        ValueError: audio is not one-dimensional, sample_rate or chunk_s is not positive.
    """
    samples = _to_16k(audio, sample_rate)
    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be positive, got {chunk_s}")
    duration_s = len(audio) / sample_rate
    if len(samples) < SAMPLE_RATE // 10:
        raise AvatarError(f"the audio is {duration_s:.3f} s long, too short to hold speech", fix=_FIX)
    loudest = float(_frame_rms(samples, SAMPLE_RATE * 3 // 100).max())
    if loudest < _SILENT_RMS:
        raise AvatarError(
            f"the audio is silent (its loudest 30 ms is {_dbfs(loudest):.0f} dBFS), there are no phones to align",
            fix=_FIX,
        )
    recogniser, aligner = _decoders()
    segments: list[PhoneSegment] = []
    words = 0
    word_s = 0.0
    for start, stop in _chunks(samples, chunk_s):
        chunk = samples[start:stop]
        offset_s = start / SAMPLE_RATE
        chunk_segments, chunk_words, chunk_word_s = _align_chunk(recogniser, aligner, chunk)
        words += chunk_words
        word_s += chunk_word_s
        if not chunk_segments:
            chunk_segments = [PhoneSegment(SILENCE, 0.0, len(chunk) / SAMPLE_RATE)]
        segments.extend(
            PhoneSegment(s.phone, s.start_s + offset_s, min(s.end_s + offset_s, duration_s))
            for s in chunk_segments
        )
    if words < _MIN_WORDS or word_s < _MIN_WORD_FRACTION * duration_s:
        raise AvatarError(
            f"no English speech recognised in the audio ({words} word{'s' * (words != 1)} covering {word_s:.1f} of "
            f"{duration_s:.1f} s): it is not English speech, or too noisy or quiet to align",
            fix=_FIX,
        )
    return _tile(segments, duration_s)


@dataclass(frozen=True)
class AlignedSpeech:
    """The phones of a clip's audio, or why there are none."""

    phones: tuple[PhoneSegment, ...] | None
    note: str | None

    def from_frame(self, frame: int, fps: float) -> tuple[PhoneSegment, ...]:
        """The phones with times counted from the start of video frame `frame`."""
        offset = frame / fps
        return tuple(
            replace(p, start_s=p.start_s - offset, end_s=p.end_s - offset) for p in self.phones or ()
        )


def align_speech(audio: np.ndarray, sample_rate: int) -> AlignedSpeech:
    """Audio that pocketsphinx cannot align is reported in `note`, not raised: the other metrics still count."""
    try:
        return AlignedSpeech(tuple(align_phones(audio, sample_rate)), None)
    except AvatarError as error:
        return AlignedSpeech(None, str(error))


def _to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[S] at sample_rate -> [S'] float32 at 16 kHz in [-1, 1]."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono [S] audio, got shape {audio.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / 32768.0
    audio = np.nan_to_num(audio.astype(np.float32, copy=False))
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        common = math.gcd(SAMPLE_RATE, int(sample_rate))
        audio = resample_poly(audio, SAMPLE_RATE // common, int(sample_rate) // common).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def _frame_rms(samples: np.ndarray, hop: int) -> np.ndarray:
    """[S] -> [ceil(S / hop)] RMS of consecutive hop-long frames (the last one zero-padded)."""
    frames = -(-len(samples) // hop)
    padded = np.zeros(frames * hop, np.float64)
    padded[: len(samples)] = samples
    return np.sqrt(np.mean(padded.reshape(frames, hop) ** 2, axis=1))


def _dbfs(rms: float) -> float:
    return 20 * math.log10(max(rms, 1e-6))


def _chunks(samples: np.ndarray, chunk_s: float) -> Iterator[tuple[int, int]]:
    """(start, stop) sample ranges covering `samples`, each about chunk_s long, cut in the middle of the
    quietest _PAUSE_S within chunk_s * (1 +- _SEARCH_FRACTION) of the chunk's start."""
    hop = SAMPLE_RATE // _FRAME_RATE
    energy = _frame_rms(samples, hop) ** 2
    window = max(1, round(_PAUSE_S * _FRAME_RATE))
    smoothed = np.convolve(energy, np.ones(window) / window, mode="same")  # [frames], centred
    chunk = chunk_s * _FRAME_RATE
    start = 0
    frames = len(energy)
    while frames - start > chunk * (1 + _SEARCH_FRACTION):
        lo = start + max(window, int(chunk * (1 - _SEARCH_FRACTION)))
        hi = min(frames - window, start + int(chunk * (1 + _SEARCH_FRACTION)) + 1)
        if hi <= lo:
            break
        cut = lo + int(np.argmin(smoothed[lo:hi]))
        yield start * hop, cut * hop
        start = cut
    yield start * hop, len(samples)


def _decoders() -> tuple[Decoder, Decoder]:
    """A recogniser (the default en-US language model) and an aligner (no language model; bestpath off, as
    pocketsphinx's own phone-alignment tests advise). Both dither, or digital silence decodes to words."""
    try:
        from pocketsphinx import Decoder, set_loglevel
    except ImportError as error:
        raise AvatarError(
            f"phone alignment needs pocketsphinx ({error})",
            fix='Install it: `pip install "pocketsphinx>=5,<6"`',
        ) from error
    set_loglevel("FATAL")  # its INFO/WARN lines go to stderr at every decoder start and utterance
    try:
        return Decoder(dither=True, loglevel="FATAL"), Decoder(
            lm=None, bestpath=False, dither=True, loglevel="FATAL"
        )
    except (RuntimeError, ValueError) as error:
        raise AvatarError(
            f"pocketsphinx could not load its en-US models ({error})",
            fix='Reinstall it: `pip install --force-reinstall "pocketsphinx>=5,<6"`',
        ) from error


def _decode(decoder: Decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, no_search=False, full_utt=True)
    decoder.end_utt()


def _align_chunk(
    recogniser: Decoder, aligner: Decoder, chunk: np.ndarray
) -> tuple[list[PhoneSegment], int, float]:
    """[S] 16 kHz samples -> (their phone segments from 0 s, recognised words, seconds those words span).

    A chunk where pocketsphinx fails or finds no words gives no segments."""
    pcm = (chunk * 32767.0).astype("<i2").tobytes()
    try:
        _decode(recogniser, pcm)
        hypothesis = recogniser.hyp()
        text = "" if hypothesis is None else hypothesis.hypstr.strip()
        if not text:
            return [], 0, 0.0
        spans = [(s.start_frame, s.end_frame + 1) for s in recogniser.seg() if not _is_filler_word(s.word)]
        words = len(text.split())
        word_s = sum(stop - start for start, stop in spans) / _FRAME_RATE
        aligner.set_align_text(text)
        _decode(aligner, pcm)
        aligner.set_alignment()
        _decode(aligner, pcm)
        alignment = aligner.get_alignment()
        phones = [] if alignment is None else list(alignment.phones())
    except (RuntimeError, ValueError, TypeError) as error:  # pocketsphinx's errors on audio it cannot align
        _log.warning(
            "pocketsphinx could not align %.1f s of audio (%s); left as silence", len(chunk) / 16e3, error
        )
        return [], 0, 0.0
    segments = [
        PhoneSegment(
            SILENCE if p.name in _FILLERS else p.name,
            p.start / _FRAME_RATE,
            (p.start + p.duration) / _FRAME_RATE,
        )
        for p in phones
        if p.duration > 0
    ]
    return segments, words, word_s


def _is_filler_word(word: str) -> bool:
    return word.startswith(("<", "[")) or word == "(NULL)"


def _tile(segments: list[PhoneSegment], duration_s: float) -> list[PhoneSegment]:
    """Time-ordered segments -> segments that tile [0, duration_s]: a gap under _MAX_GAP_S (the few frames an
    alignment leaves at a chunk's end) is closed by stretching the segment before it (the first one back to
    0 s), a longer gap becomes SIL, and each run of touching SILs is merged into one."""
    tiled: list[PhoneSegment] = []
    for segment in segments:
        end_s = tiled[-1].end_s if tiled else 0.0
        start_s, stop_s = max(segment.start_s, end_s), min(segment.end_s, duration_s)
        if stop_s <= start_s:
            continue
        if start_s - end_s >= _MAX_GAP_S:
            _append(tiled, PhoneSegment(SILENCE, end_s, start_s))
        elif start_s > end_s:
            if tiled:
                tiled[-1] = PhoneSegment(tiled[-1].phone, tiled[-1].start_s, start_s)
            else:
                start_s = 0.0
        _append(tiled, PhoneSegment(segment.phone, start_s, stop_s))
    end_s = tiled[-1].end_s if tiled else 0.0
    if duration_s - end_s >= _MAX_GAP_S or not tiled:
        _append(tiled, PhoneSegment(SILENCE, end_s, duration_s))
    elif duration_s > end_s:
        tiled[-1] = PhoneSegment(tiled[-1].phone, tiled[-1].start_s, duration_s)
    return tiled


def _append(segments: list[PhoneSegment], segment: PhoneSegment) -> None:
    """Append, merging a SIL into a SIL that ends where it starts."""
    if segments and segment.phone == SILENCE and segments[-1].phone == SILENCE:
        segments[-1] = PhoneSegment(SILENCE, segments[-1].start_s, segment.end_s)
    else:
        segments.append(segment)
