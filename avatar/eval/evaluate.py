"""`avatar eval`: held-out frames rendered from their own audio and pose, measured against the real ones."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
import tyro
from tqdm.auto import tqdm

from avatar.audio.phone_file import read_phone_file
from avatar.audio.phones import AlignedSpeech
from avatar.core.atomic import check_writable
from avatar.core.backends import DeviceName, RasterizerName
from avatar.core.errors import AvatarError
from avatar.core.records import Record
from avatar.data.head_window import HeadWindow
from avatar.drive.compositor import to_uint8
from avatar.drive.driver import FittedHead, load_fitted
from avatar.drive.phone_check import PhoneCheck
from avatar.drive.phonetic_mouth import PhoneticBlend
from avatar.drive.video import drive_with_audio
from avatar.eval.lip_sync import LipSyncSummary, lip_sync_plot, score, summarize
from avatar.eval.plots import line_plot_png, side_by_side
from avatar.face.regions import mouth_region, neck_band
from avatar.media.video_writer import VideoWriter
from avatar.metrics.image import box_from_mask, psnr_from_mse, ssim
from avatar.metrics.landmarks import FaceMeshRunner, MouthMetrics, mouth_opening
from avatar.runs.run_dir import RunLayout


@dataclass
class EvalConfig:
    """Measure a fitted head on the held-out frames of its dataset."""

    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """An `avatar fit` output directory."""
    json: Path
    """Where to write the metrics."""
    video: Path | None = None
    """Side-by-side video (real | rendered); default: RUN/eval_side_by_side.mp4."""
    plot: Path | None = None
    """Mouth opening over time, real vs rendered; default: RUN/eval_mouth_opening.png."""
    audio: Path | None = None
    """Score the avatar driven by this speech instead of the held-out frames: render it, measure the mouth
    and score it against the audio's phones (English; any format PyAV reads)."""
    phones: Path | None = None
    """With --audio: score against the phones in this JSON file instead of pocketsphinx's alignment (speech in
    another language; format in avatar/audio/phone_file.py). The avatar still hears the audio as `avatar
    render` drives it."""
    lip_plot: Path | None = None
    """Mouth opening with the open vowels and closures marked; default: RUN/eval_lip_sync.png."""
    dataset: Path | None = None
    """The dataset the run was fitted to, if it has moved."""
    device: DeviceName = "auto"
    """Where to render."""
    backend: RasterizerName = "auto"
    """Rasterizer implementation."""
    progress: bool = True
    """Show a progress bar."""


def _squared_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """-> (sum of squared errors, number of values) of two float images, over a mask when given."""
    diff = (a - b) ** 2
    if mask is None:
        return float(diff.sum()), float(diff.size)
    return float((diff * mask[..., None]).sum()), float(mask.sum() * diff.shape[-1])


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))))


def _slices(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """`box_from_mask`'s (y0, y1, x0, x1) -> the rows and columns it covers."""
    y0, y1, x0, x1 = box
    return slice(y0, y1), slice(x0, x1)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


@dataclass(frozen=True)
class TorsoScores:
    """The held-out frames' scores where the torso shows, for one way of drawing it."""

    psnr_head_box: float  # dB, the head window
    psnr_head: float  # dB, the real frame's head mask
    psnr_torso: float  # dB, the real frame's torso mask
    ssim_torso: float  # over the torso mask's bounding box
    psnr_neck: float  # dB, the band across the head's outline below the mouth


@dataclass(frozen=True)
class EvalMetrics(Record):
    """`avatar eval`'s measurements on the held-out frames (written to --json)."""

    FORMAT: ClassVar[str] = "splat-avatar-eval"
    VERSION: ClassVar[int] = 6

    frames: int
    psnr: float  # dB, whole composited frame
    ssim: float
    psnr_head_box: float  # dB, the head window
    ssim_head_box: float
    psnr_mouth: float  # dB, the mouth region
    psnr_head: float  # dB, the real frame's head mask
    # what drew the torso: "gaussian" (with the head, one pass, coloured by the frame as a render at the
    # capture's camera is) or "pasted" (the frame's own pixels under the head)
    torso: str
    psnr_torso: float  # dB, the real frame's torso mask
    ssim_torso: float  # over the torso mask's bounding box
    psnr_neck: float  # dB, a band across the head's outline below the mouth: chin, jaw, neck (`neck_band`)
    # with a Gaussian torso: the same scores with the Gaussians' own colours (as every other camera shows
    # them) and with the frame's torso pasted under the head alone (as runs without a torso render), to compare
    torso_gaussian_colours: TorsoScores | None
    torso_pasted: TorsoScores | None
    lmd_px: float  # lip landmark distance (avatar.metrics.landmarks)
    mouth_open_correlation: float  # Pearson r of the real and rendered mouth opening
    eye_open_correlation: float  # Pearson r of the real and rendered eye openness: do the blinks render?
    articulation_gain: float  # the mouth scale that matched the held-out audio's motion to the capture's
    frames_without_face: int  # rendered frames the face mesh finds no face in
    render_fps: float
    render_resolution: int
    device: str
    checkpoint_step: int
    video: Path
    plot: Path
    mouth_open_real: tuple[float | None, ...]  # per held-out frame; None where no face was found
    mouth_open_rendered: tuple[float | None, ...]
    lip_sync: LipSyncSummary | None  # the rendered held-out frames against their audio's phones
    lip_sync_real: LipSyncSummary | None  # the real held-out frames, the same way
    lip_sync_reference: LipSyncSummary | None  # the whole capture's real mouth: the person's own level
    lip_sync_note: str | None  # why a lip-sync score is missing
    # whether the capture's phones drove the mouth (avatar/drive/phone_check.py); None: no phone channels
    phone_check: PhoneCheck | None = None


@dataclass(frozen=True)
class DrivenEvalMetrics(Record):
    """`avatar eval --audio`: the avatar driven by new speech, its lip sync against that speech's phones."""

    FORMAT: ClassVar[str] = "splat-avatar-eval-driven"
    VERSION: ClassVar[int] = 4

    audio: Path
    frames: int
    lip_sync: LipSyncSummary | None  # spread_ratio: against the capture's real mouth
    lip_sync_reference: LipSyncSummary | None  # the capture's own video against its own audio
    lip_sync_note: str | None
    articulation_gain: float  # the mouth scale that matched the audio's articulation to the capture's
    frames_without_face: int
    video: Path
    plot: Path
    mouth_open_rendered: tuple[float | None, ...]
    phones: Path | None = None  # the phone file scored against; None: pocketsphinx's alignment of the audio
    # whether the capture's phones drove the mouth (avatar/drive/phone_check.py); None: no phone channels
    phone_check: PhoneCheck | None = None
    # how much of the mouth was phonetic (avatar/drive/phonetic_mouth.py); None: the audio had no phones
    phonetic: PhoneticBlend | None = None


def _series(values: np.ndarray) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(v) else round(float(v), 5) for v in values)


@dataclass(frozen=True)
class _Regions:
    """Where one held-out frame is scored."""

    real: np.ndarray  # [S, S, 3] float32 in [0, 1]
    head_box: tuple[slice, slice]
    head: np.ndarray  # [S, S] float32 masks
    torso: np.ndarray
    neck: np.ndarray
    torso_box: tuple[int, int, int, int] | None  # (y0, y1, x0, x1)


class _TorsoTally:
    """`TorsoScores` summed over frames."""

    def __init__(self) -> None:
        self.errors = _ErrorSums()
        self.ssim: list[float] = []

    def add(self, rendered: np.ndarray, regions: _Regions) -> None:
        real = regions.real
        self.errors.add("head_box", rendered[regions.head_box], real[regions.head_box])
        self.errors.add("head", rendered, real, regions.head)
        self.errors.add("torso", rendered, real, regions.torso)
        self.errors.add("neck", rendered, real, regions.neck)
        if regions.torso_box is not None:
            box = _slices(regions.torso_box)
            self.ssim.append(_ssim(rendered[box], real[box]))

    def scores(self) -> TorsoScores:
        psnr = self.errors.psnr
        return TorsoScores(psnr("head_box"), psnr("head"), psnr("torso"), _mean(self.ssim), psnr("neck"))


class _ErrorSums:
    """Squared errors and value counts, summed over frames, per region."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, rendered: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> None:
        error, count = _squared_error(rendered, real, mask)
        entry = self.sums.setdefault(name, [0.0, 0.0])
        entry[0] += error
        entry[1] += count

    def psnr(self, name: str) -> float:
        error, count = self.sums[name]
        return psnr_from_mse(error / max(count, 1.0))


def _outputs(config: EvalConfig) -> tuple[Path, Path, Path]:
    """(video, plot, lip plot) paths of an evaluation, checked writable before any work."""
    layout = RunLayout(Path(config.run))
    driven = config.audio is not None
    video = config.video or (layout.eval_driven_video if driven else layout.eval_video)
    plot = config.plot or layout.eval_plot
    lip_plot = config.lip_plot or layout.eval_lip_plot
    for path, flag in (
        (config.json, "--json"),
        (video, "--video"),
        (plot, "--plot"),
        (lip_plot, "--lip-plot"),
    ):
        check_writable(path, flag=flag)
    return video, plot, lip_plot


def _capture_reference(fitted: FittedHead) -> tuple[AlignedSpeech, np.ndarray, LipSyncSummary | None]:
    """The capture's phones, its real mouth opening over all frames (measured as the rendered ones are; NaN
    where untracked) and their lip-sync score: the level of the person's own video."""
    dataset = fitted.dataset
    speech = dataset.speech
    real = np.full(dataset.num_frames, np.nan)
    with FaceMeshRunner() as runner:
        for index in np.flatnonzero(dataset.tracking.valid):
            points = runner.landmarks(dataset.frame(int(index)))
            real[index] = np.nan if points is None else mouth_opening(points)
    reference = score(real, speech, dataset.fps)
    return speech, real, None if reference is None else summarize(reference)


def evaluate(config: EvalConfig) -> EvalMetrics | DrivenEvalMetrics:
    video_path, plot_path, lip_plot_path = _outputs(config)
    if config.phones is not None and config.audio is None:
        raise AvatarError("--phones are the phones of --audio", fix="Pass --audio with --phones")
    reference_phones = None if config.phones is None else read_phone_file(config.phones)
    fitted = load_fitted(config.run, device=config.device, backend=config.backend, dataset=config.dataset)
    if config.audio is not None:
        return _evaluate_driven(config, fitted, video_path, lip_plot_path, reference_phones)
    dataset, driver, window = fitted.dataset, fitted.driver, fitted.window
    tracking = dataset.tracking
    held_out = dataset.split.val
    if len(held_out) == 0:
        raise AvatarError("the dataset holds out no frames", path=dataset.root, fix="Capture a longer video")
    # the held-out frames' own audio, lined up with their mouths, driving the mouth as a render does
    signals = fitted.capture_driving()
    gain = fitted.articulation_gain(signals, held_out)  # as `avatar render` drives any audio
    viewmats = torch.from_numpy(tracking.viewmats).float()
    background = dataset.background()
    errors = _ErrorSums()
    shown, gaussian_colours, pasted = _TorsoTally(), _TorsoTally(), _TorsoTally()
    ssim_frame, ssim_head = [], []
    render_seconds = 0.0
    band_px = max(2, dataset.size // 64)  # 8 px either side of the outline at 512 px
    box = (slice(window.y0, window.y0 + window.side), slice(window.x0, window.x0 + window.side))
    size = dataset.size
    whole = HeadWindow(0, 0, size)  # a bust is rendered over the whole frame
    with MouthMetrics() as mouth, VideoWriter(video_path, int(round(dataset.fps)), 2 * size, size) as video:
        for index in tqdm(held_out, desc="eval", unit="frame", disable=not config.progress, leave=False):
            index = int(index)
            conditions = signals.conditions([index], window=driver.model.window, device=driver.device)
            start = time.perf_counter()
            if fitted.torso is None:
                rendered = fitted.render_capture_frame(conditions, index, background, mouth_scale=gain)
            else:
                bust = fitted.render_capture_bust(conditions, index, mouth_scale=gain)
                rendered = fitted.composite(bust, index, background, window=whole)
            if driver.device.type == "cuda":
                torch.cuda.synchronize()
            render_seconds += time.perf_counter() - start
            real = dataset.frame(index)
            real_float = real.astype(np.float32) / 255
            masks = dataset.masks(index)
            mouth_mask = (mouth_region(tracking.landmarks[index], size) > 127).astype(np.float32)
            torso_mask = (masks[..., 2] > 127).astype(np.float32)
            neck_mask = (neck_band(masks[..., 1], tracking.landmarks[index], band_px) > 127).astype(
                np.float32
            )
            head_mask = (masks[..., 1] > 127).astype(np.float32)
            regions = _Regions(real_float, box, head_mask, torso_mask, neck_mask, box_from_mask(torso_mask))
            errors.add("frame", rendered, real_float)
            errors.add("mouth", rendered, real_float, mouth_mask)
            ssim_frame.append(_ssim(rendered, real_float))
            ssim_head.append(_ssim(rendered[box], real_float[box]))
            shown.add(rendered, regions)
            # the Gaussians' own colours, and the frame's torso pasted under the head alone, to compare
            if fitted.torso is not None:
                gaussian_colours.add(fitted.composite(bust, None, background, window=whole), regions)
                head = driver.render(conditions, viewmats[index : index + 1], mouth_scale=gain)[0]
                pasted.add(fitted.composite(head, index, background), regions)
            rendered_u8 = to_uint8(rendered)
            mouth.add(real, rendered_u8)
            video.write(side_by_side(real, rendered_u8))
        lips = mouth.result()
    line_plot_png(
        plot_path,
        {"real": lips.mouth_open_real, "rendered": lips.mouth_open_rendered},
        x=held_out / dataset.fps,
        title="mouth opening on the held-out frames",
        xlabel="time (s)",
        ylabel="inner-lip gap / mouth width",
    )
    scores = shown.scores()
    metrics = EvalMetrics(
        frames=len(held_out),
        psnr=errors.psnr("frame"),
        ssim=float(np.mean(ssim_frame)),
        psnr_head_box=scores.psnr_head_box,
        ssim_head_box=float(np.mean(ssim_head)),
        psnr_mouth=errors.psnr("mouth"),
        psnr_head=scores.psnr_head,
        torso="pasted" if fitted.torso is None else "gaussian",
        psnr_torso=scores.psnr_torso,
        ssim_torso=scores.ssim_torso,
        psnr_neck=scores.psnr_neck,
        torso_gaussian_colours=None if fitted.torso is None else gaussian_colours.scores(),
        torso_pasted=None if fitted.torso is None else pasted.scores(),
        lmd_px=lips.lmd_px,
        mouth_open_correlation=lips.mouth_open_correlation,
        eye_open_correlation=lips.eye_open_correlation,
        articulation_gain=gain,
        frames_without_face=lips.frames_without_face,
        render_fps=len(held_out) / render_seconds if render_seconds > 0 else math.nan,
        render_resolution=driver.resolution,
        device=str(driver.device),
        checkpoint_step=fitted.step,
        video=video_path,
        plot=plot_path,
        mouth_open_real=_series(lips.mouth_open_real),
        mouth_open_rendered=_series(lips.mouth_open_rendered),
        **_held_out_lip_sync(fitted, held_out, lips.mouth_open_rendered, lips.mouth_open_real, lip_plot_path),
        phone_check=fitted.phone_check if fitted.hears_phones else None,
    )
    metrics.write(config.json)
    return metrics


def _held_out_lip_sync(
    fitted: FittedHead, held_out: np.ndarray, rendered: np.ndarray, real: np.ndarray, lip_plot: Path
) -> dict[str, LipSyncSummary | str | None]:
    """The lip-sync fields of EvalMetrics: the held-out frames (rendered and real) against the phones of
    their audio, and the whole capture as the reference."""
    speech, capture_real, reference = _capture_reference(fitted)
    fps, first = fitted.dataset.fps, int(held_out[0])
    span = np.full(int(held_out[-1]) - first + 1, np.nan)
    rendered_span, real_span = span.copy(), span.copy()
    rendered_span[held_out - first], real_span[held_out - first] = rendered, real
    rendered_score = score(rendered_span, speech, fps, first_frame=first)
    real_score = score(real_span, speech, fps, first_frame=first)
    if rendered_score is not None:
        lip_sync_plot(lip_plot, rendered_score, fps, "rendered held-out frames")
    return {
        "lip_sync": None if rendered_score is None else summarize(rendered_score, capture_real),
        "lip_sync_real": None if real_score is None else summarize(real_score, capture_real),
        "lip_sync_reference": reference,
        "lip_sync_note": speech.note,
    }


def _evaluate_driven(
    config: EvalConfig,
    fitted: FittedHead,
    video_path: Path,
    lip_plot_path: Path,
    reference_phones: AlignedSpeech | None,
) -> DrivenEvalMetrics:
    """The avatar driven by `config.audio`: rendered (and written to `video_path`), its mouth measured in
    every frame and scored against the audio's phones (`reference_phones` if given, else pocketsphinx's); the
    capture's own video as the reference."""
    clip = drive_with_audio(fitted, config.audio)
    size, fps = fitted.dataset.size, fitted.dataset.fps
    opening = np.full(clip.count, np.nan)
    missing = 0
    with (
        FaceMeshRunner() as runner,
        VideoWriter(
            video_path, int(round(fps)), size, size, audio=clip.audio, audio_rate=clip.sample_rate
        ) as video,
    ):
        for i, frame in enumerate(clip.frames(progress=config.progress)):
            points = runner.landmarks(frame)
            missing += points is None
            if points is not None:
                opening[i] = mouth_opening(points)
            video.write(frame)
    speech = clip.speech if reference_phones is None else reference_phones
    driven = score(opening, speech, fps)
    _, capture_real, reference = _capture_reference(fitted)
    if driven is not None:
        lip_sync_plot(lip_plot_path, driven, fps, f"driven by {Path(config.audio).name}")
    metrics = DrivenEvalMetrics(
        audio=Path(config.audio),
        frames=clip.count,
        lip_sync=None if driven is None else summarize(driven, capture_real),
        lip_sync_reference=reference,
        lip_sync_note=speech.note,
        articulation_gain=clip.articulation_gain,
        frames_without_face=missing,
        video=video_path,
        plot=lip_plot_path,
        mouth_open_rendered=_series(opening),
        phones=config.phones,
        phone_check=fitted.phone_check if fitted.hears_phones else None,
        phonetic=clip.phonetic,
    )
    metrics.write(config.json)
    return metrics
