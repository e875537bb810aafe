"""A deterministic speech-like audio synthesiser: voiced syllables, phrases and pauses, from numpy alone.

The sound is a source-filter model: a glottal pulse train whose pitch drifts slowly, shaped by formant
resonators that glide between vowel targets, gated by a syllable envelope (3-5 syllables a second,
grouped into phrases with short silences between them), plus a little breath noise. It is not
intelligible speech; it has the rhythm and spectrum a lip-sync model sees in real speech, and its
envelope is known exactly, which is what the built-in sample clip needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (F1, F2, F3) in Hz of a few vowels, roughly those of an adult speaker.
VOWEL_FORMANTS_HZ = np.array(
    [
        [730.0, 1090.0, 2440.0],  # a
        [530.0, 1840.0, 2480.0],  # e
        [270.0, 2290.0, 3010.0],  # i
        [570.0, 840.0, 2410.0],  # o
        [300.0, 870.0, 2240.0],  # u
    ]
)
FORMANT_BANDWIDTHS_HZ = np.array([80.0, 110.0, 160.0])

# Short-time filtering: frames of FRAME samples every HOP samples, FFT of FFT_SIZE (zero padding leaves room
# for the resonators' ringing so circular convolution does not wrap).
FRAME = 320
HOP = 80
FFT_SIZE = 1024


@dataclass(frozen=True)
class SynthSpeech:
    audio: np.ndarray  # [S] float32 in [-1, 1]
    envelope: np.ndarray  # [S] float32 in [0, 1], the syllable amplitude envelope
    sample_rate: int


@dataclass(frozen=True)
class _Syllable:
    start: float  # seconds
    duration: float  # seconds
    peak: float  # in (0, 1]
    vowel: int  # row of VOWEL_FORMANTS_HZ
    fricative_onset: bool


def synthesize_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> SynthSpeech:
    """Synthesise `seconds` of speech-like audio; the same seed always gives the same samples."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    rng = np.random.default_rng(seed)
    n_samples = int(round(seconds * sample_rate))
    t = np.arange(n_samples) / sample_rate

    syllables = _plan_syllables(seconds, rng)
    envelope = _syllable_envelope(syllables, t)
    f0 = _pitch_contour(t, syllables, rng)
    formants = _formant_tracks(t, syllables)

    glottal = _glottal_excitation(f0, sample_rate)
    breath = rng.standard_normal(n_samples) * 0.08
    voiced = _formant_filter(glottal + breath, formants, sample_rate) * envelope
    fricatives = _fricative_bursts(syllables, t, sample_rate, rng)
    audio = voiced + fricatives
    audio = audio - audio.mean()
    peak = np.abs(audio).max()
    if peak > 0:
        audio = audio * (0.8 / peak)
    return SynthSpeech(
        audio=audio.astype(np.float32), envelope=envelope.astype(np.float32), sample_rate=sample_rate
    )


def _plan_syllables(seconds: float, rng: np.random.Generator) -> list[_Syllable]:
    """Phrases of 1.2-3 s separated by 0.25-0.6 s pauses, each a run of 0.18-0.32 s syllables."""
    syllables: list[_Syllable] = []
    cursor = rng.uniform(0.15, 0.35)
    while cursor < seconds - 0.25:
        phrase_end = min(cursor + rng.uniform(1.2, 3.0), seconds - 0.1)
        while cursor < phrase_end - 0.15:
            duration = min(rng.uniform(0.18, 0.32), phrase_end - cursor)
            syllables.append(
                _Syllable(
                    start=cursor,
                    duration=duration,
                    peak=rng.uniform(0.55, 1.0),
                    vowel=int(rng.integers(len(VOWEL_FORMANTS_HZ))),
                    fricative_onset=bool(rng.random() < 0.35),
                )
            )
            cursor += duration + rng.uniform(0.0, 0.04)
        cursor += rng.uniform(0.25, 0.6)
    return syllables


def _syllable_envelope(syllables: list[_Syllable], t: np.ndarray) -> np.ndarray:
    """Each syllable is a smooth bump (fast rise, slower fall); overlapping bumps take the maximum."""
    envelope = np.zeros_like(t)
    for s in syllables:
        u = (t - s.start) / s.duration
        inside = (u > 0) & (u < 1)
        rise = 0.3
        shape = np.where(
            u < rise,
            0.5 - 0.5 * np.cos(np.pi * np.clip(u / rise, 0, 1)),
            0.5 + 0.5 * np.cos(np.pi * np.clip((u - rise) / (1 - rise), 0, 1)),
        )
        envelope = np.maximum(envelope, np.where(inside, s.peak * shape, 0.0))
    return np.clip(envelope, 0.0, 1.0)


def _pitch_contour(t: np.ndarray, syllables: list[_Syllable], rng: np.random.Generator) -> np.ndarray:
    """Fundamental frequency in Hz: a speaker base, a slow drift, a syllable accent, and a little jitter."""
    base = rng.uniform(120.0, 170.0)
    drift = np.zeros_like(t)
    for _ in range(3):
        freq = rng.uniform(0.1, 0.5)
        drift += rng.uniform(8.0, 18.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    accent = np.zeros_like(t)
    for s in syllables:
        u = (t - s.start) / s.duration
        accent += np.where((u > 0) & (u < 1), rng.uniform(-10.0, 25.0) * np.sin(np.pi * np.clip(u, 0, 1)), 0)
    jitter = 1.0 + 0.004 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi))
    return np.clip((base + drift + accent) * jitter, 100.0, 220.0)


def _formant_tracks(t: np.ndarray, syllables: list[_Syllable]) -> np.ndarray:
    """[S, 3] formant frequencies gliding between the vowel targets of consecutive syllables."""
    if not syllables:
        return np.broadcast_to(VOWEL_FORMANTS_HZ[0], (len(t), 3)).copy()
    centres = np.array([s.start + 0.45 * s.duration for s in syllables])
    targets = VOWEL_FORMANTS_HZ[[s.vowel for s in syllables]]
    return np.stack([np.interp(t, centres, targets[:, k]) for k in range(3)], axis=1)


def _glottal_excitation(f0: np.ndarray, sample_rate: int) -> np.ndarray:
    """Time derivative of a Rosenberg glottal pulse train (the derivative models lip radiation)."""
    phase = np.cumsum(f0 / sample_rate) % 1.0
    opening, closing = 0.4, 0.16
    flow = np.where(
        phase < opening,
        0.5 - 0.5 * np.cos(np.pi * phase / opening),
        np.where(phase < opening + closing, np.cos(0.5 * np.pi * (phase - opening) / closing), 0.0),
    )
    return np.diff(flow, prepend=flow[0]) * (sample_rate / 200.0)


def _formant_filter(excitation: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Filter with a cascade of two-pole resonators whose frequencies change over time.

    Done as windowed short-time filtering: each Hann-windowed frame is multiplied in the frequency
    domain by the resonators' response at that frame's formants, and the frames are overlap-added.
    """
    n = len(excitation)
    n_frames = int(np.ceil(n / HOP)) + FRAME // HOP
    padded = np.zeros(n_frames * HOP + FFT_SIZE)
    padded[FRAME : FRAME + n] = excitation
    starts = np.arange(n_frames) * HOP
    window = np.hanning(FRAME + 1)[:-1]
    frames = padded[starts[:, None] + np.arange(FRAME)[None, :]] * window

    centre_samples = np.clip(starts + FRAME // 2 - FRAME, 0, n - 1)
    frame_formants = formants[centre_samples]  # [F, 3]
    omega = 2 * np.pi * np.fft.rfftfreq(FFT_SIZE)  # [B] radians per sample
    z1 = np.exp(-1j * omega)[None, :]
    response = np.ones((n_frames, len(omega)), dtype=np.complex128)
    for k in range(3):
        radius = np.exp(-np.pi * FORMANT_BANDWIDTHS_HZ[k] / sample_rate)
        theta = 2 * np.pi * frame_formants[:, k : k + 1] / sample_rate
        a1 = -2 * radius * np.cos(theta)
        a2 = radius**2
        gain = 1 + a1 + a2  # unity response at DC
        response *= gain / (1 + a1 * z1 + a2 * z1**2)

    filtered = np.fft.irfft(np.fft.rfft(frames, FFT_SIZE, axis=1) * response, FFT_SIZE, axis=1)
    sample_index = starts[:, None] + np.arange(FFT_SIZE)[None, :]
    out = np.bincount(sample_index.ravel(), weights=filtered.ravel(), minlength=len(padded))
    hann_overlap_gain = window.sum() / HOP
    return out[FRAME : FRAME + n] / hann_overlap_gain


def _fricative_bursts(
    syllables: list[_Syllable], t: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Short high-pass noise bursts (like 's' or 'f') just before some syllables."""
    out = np.zeros_like(t)
    for s in syllables:
        if not s.fricative_onset:
            continue
        length = 0.06
        u = (t - (s.start - 0.02)) / length
        inside = (u > 0) & (u < 1)
        count = int(inside.sum())
        if count < 3:
            continue
        noise = rng.standard_normal(count)
        noise = np.diff(noise, prepend=0.0)  # first difference tilts the noise towards high frequencies
        out[inside] += 0.06 * s.peak * np.sin(np.pi * u[inside]) * noise
    return out
