"""How far a driven mouth moves: the driving audio's articulation matched to the capture's amplitude.

The audio -> mouth-motion predictor is fitted on a few minutes of one voice. On speech it has not heard it
regresses towards the mean: the rendered mouth moved 0.6 of the real spread on the Obama avatar and 0.4-0.5 on
a 20 s phone clip, while the same avatars rendering the tracked motion keep ~0.9 of it. A render sees the whole
driving clip, so its articulation can be measured and brought to the person's own:

    gain = rms of the capture's tracked motion about rest, over its speech frames (training frames only)
         / rms of the driving clip's predicted motion about the predicted rest, over its speech frames

applied as `TalkingHead.forward`'s mouth scale (about the motion of silence, so closures stay closed), within
[1 / MAX_GAIN, MAX_GAIN]. A short clip says little about its amplitude (two seconds of a calm sentence are not
the person's usual articulation), so the gain is drawn towards 1 in proportion: gain ** (n / (n + fps *
PRIOR_SECONDS)) for n speech frames. One second of speech weighs as much as the prior: the 1.4 s of speech in
the held-out end of a 20 s capture keeps 0.58 of its measured gain (in log), the 6.7 s of an LJSpeech sentence
0.87 (1.88 measured, 1.73 applied on the phone_talker avatar; with a 2 s prior it kept 0.77 and the rendered
mouth moved 0.80 of the real one's spread, 0.83 with 1 s). Speech frames are those at least as loud as the capture's `SPEECH_QUANTILE`
quietest training frame, on the capture's normalised log-mel scale, so the pauses of either clip do not
dilute its amplitude. Nothing here depends on the language: it works on the motion, not the phones.

The predictor hears each frame's window on its own, so its motion jitters from frame to frame where a real mouth
moves smoothly. A driven clip's motion is predicted for every frame, then smoothed over time (`clip_motion`): a
running median over `MEDIAN_SECONDS` either side, which drops one-frame spikes and keeps the edges of a closure,
then a Gaussian of `SMOOTHING_SECONDS`. The smoothing lowers the rms of the motion too; the gain makes that good
in full (the prior above is about the clip's speech, not about our filter), so the smoothed mouth moves as far
as the unsmoothed one would have. On the motion path alone (five
three-predictor fits of two 20 s captures, the inner-lip gap) this raised the held-out correlation from 0.755
to 0.804 on average (by 0.03-0.07 in each fit) and moved the viseme AUC on new speech little (LJ 0.919 ->
0.921, obama_speech 0.934 -> 0.910). Lighter smoothing kept more AUC and less correlation, heavier the
reverse (a 28 ms Gaussian after the median: 0.792, 0.922, 0.921; a 5-frame median: 0.807, 0.924, 0.914).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import median_filter

from avatar.audio.sync import speech_loudness
from avatar.model.talking_head import ClipSignals, TalkingHead

MAX_GAIN = 2.5
MEDIAN_SECONDS = 0.04  # the running median of the motion reaches this far either side (a frame at 25 fps)
SMOOTHING_SECONDS = 0.04  # then the standard deviation of the Gaussian it is smoothed with
SPEECH_QUANTILE = 0.3
MIN_SPEECH_SECONDS = 1.0  # less speech than this: too little to measure, gain 1
PRIOR_SECONDS = 1.0  # a clip with this much speech gets half its measured gain (in log)
CHUNK_FRAMES = 256


@dataclass(frozen=True)
class ArticulationLevel:
    """The capture's articulation: what a driving clip's is matched to."""

    rms: float  # metres: rms of the tracked mouth motion about rest over the speech frames
    speech_loudness: float  # frames at least this loud (`speech_loudness`) are speech


def motion_rms(motion: np.ndarray, rest: np.ndarray) -> float:
    """[T, J, 3] motion and [J, 3] rest -> the root mean square over frames of the motion's distance from rest
    (summed over the landmarks), metres; NaN when T is 0."""
    if len(motion) == 0:
        return float("nan")
    return float(np.sqrt(np.square(motion - rest).sum(axis=(1, 2)).mean()))


def capture_level(
    tracked: np.ndarray, rest: np.ndarray, loudness: np.ndarray, train_frames: np.ndarray
) -> ArticulationLevel:
    """The capture's `ArticulationLevel`.

    Args:
        tracked: np.ndarray  # [F, J, 3] tracked mouth motion (`avatar.model.landmark_motion.tracked_motion`)
        rest: np.ndarray  # [J, 3] the mouth at rest (`rest_motion`)
        loudness: np.ndarray  # [F] of the audio lined up with the mouth
        train_frames: np.ndarray  # [T] the frames the fit trained on
    """
    threshold = float(np.quantile(loudness[train_frames], SPEECH_QUANTILE))
    speech = train_frames[loudness[train_frames] >= threshold]
    return ArticulationLevel(rms=motion_rms(tracked[speech], rest), speech_loudness=threshold)


def smoothed_over_time(
    motion: np.ndarray,
    fps: float,
    *,
    median_seconds: float = MEDIAN_SECONDS,
    seconds: float = SMOOTHING_SECONDS,
) -> np.ndarray:
    """[T, ...] per-frame values -> the same, smoothed along T: a running median over round(median_seconds *
    fps) frames either side, then a Gaussian of standard deviation `seconds` (truncated at 2.5 of it); the
    first and last frames repeat past the ends."""
    if len(motion) < 2:
        return motion
    reach = round(median_seconds * fps)
    if reach >= 1:
        window = (2 * reach + 1,) + (1,) * (motion.ndim - 1)
        motion = median_filter(motion, size=window, mode="nearest")
    sigma = seconds * fps
    reach = int(np.ceil(2.5 * sigma))
    if reach < 1:
        return motion
    offsets = np.arange(-reach, reach + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    padded = np.concatenate([np.repeat(motion[:1], reach, 0), motion, np.repeat(motion[-1:], reach, 0)])
    smoothed = sum(w * padded[k : k + len(motion)] for k, w in enumerate(weights))
    return smoothed.astype(motion.dtype, copy=False)


def clip_motion(model: TalkingHead, signals: ClipSignals, fps: float) -> np.ndarray:
    """[F, J, 3] metres, head frame: the mouth motion `model` predicts from each of the F frames of `signals`,
    smoothed over time (`smoothed_over_time`), to render the clip with (`ClipSignals.motion`)."""
    return smoothed_over_time(frame_motion(model, signals), fps)


@torch.no_grad()
def frame_motion(model: TalkingHead, signals: ClipSignals) -> np.ndarray:
    """[F, J, 3] metres, head frame: the mouth motion `model` predicts from each of the F frames of `signals`,
    each on its own."""
    field = model.deformation
    device = field.bounds_min.device
    count = signals.audio.shape[0]
    chunks = []
    for start in range(0, count, CHUNK_FRAMES):
        frames = np.arange(start, min(start + CHUNK_FRAMES, count))
        audio = signals.conditions(frames, window=model.window, device=device).audio
        chunks.append(field.predicted_motion(audio).cpu().numpy())
    if not chunks:
        return np.zeros((0, *field.mouth_anchors.shape), np.float32)
    return np.concatenate(chunks)


@torch.no_grad()
def silence_motion(model: TalkingHead, signals: ClipSignals) -> np.ndarray:
    """[J, 3] the mouth motion `model` predicts from silence: the rest that articulation is scaled about."""
    field = model.deformation
    silence = signals.conditions([0], window=model.window, device=field.bounds_min.device).audio.zero_()
    return field.predicted_motion(silence)[0].cpu().numpy()


def articulation_gain(
    model: TalkingHead,
    signals: ClipSignals,
    level: ArticulationLevel,
    fps: float,
    frames: np.ndarray | None = None,
) -> float:
    """The mouth scale that gives the driving clip's `frames` (default all; `fps` frames a second), rendered with
    its smoothed motion (`clip_motion`), or with `signals.motion` where given, the capture's articulation (module
    docstring); 1 when the clip has too little speech to measure or the model does not move the mouth."""
    frames = np.arange(signals.audio.shape[0]) if frames is None else np.asarray(frames)
    log_mel = np.asarray(signals.audio[..., : model.config.n_mels], dtype=np.float32)
    speech = frames[speech_loudness(log_mel[frames]) >= level.speech_loudness]
    if len(speech) < MIN_SPEECH_SECONDS * fps or not np.isfinite(level.rms):
        return 1.0
    predicted = frame_motion(model, signals)
    rest = silence_motion(model, signals)
    heard = motion_rms(predicted[speech], rest)
    # what the render shows: the smoothed prediction, or the given motion (e.g. the mean of two predictions,
    # which moves less than either)
    rendered = smoothed_over_time(predicted, fps) if signals.motion is None else np.asarray(signals.motion)
    shown = motion_rms(rendered[speech], rest)
    if not (heard > 1e-6 and shown > 1e-6):
        return 1.0
    confidence = len(speech) / (len(speech) + PRIOR_SECONDS * fps)
    # the prior is about the clip's speech; what the smoothing or a mean takes off the amplitude is made good in full
    return float(np.clip((level.rms / heard) ** confidence * (heard / shown), 1 / MAX_GAIN, MAX_GAIN))
