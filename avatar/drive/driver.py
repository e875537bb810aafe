"""Driving a fitted head: frame conditions in, the head window rendered out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avatar.audio.driving import driving_features
from avatar.audio.phones import AlignedSpeech
from avatar.audio.sync import speech_loudness
from avatar.core.backends import DeviceName, RasterizerName, resolve_device
from avatar.core.errors import AvatarError
from avatar.core.pinhole import resampled_intrinsics
from avatar.data.avatar_frame import avatar_pose
from avatar.data.dataset import Dataset
from avatar.data.head_window import HeadWindow
from avatar.drive.articulation import (
    ArticulationLevel,
    articulation_gain,
    capture_level,
    clip_motion,
    silence_motion,
)
from avatar.drive.compositor import (
    empty_base,
    head_over,
    resampled,
    to_uint8,
    torso_coloured_by_frame,
    torso_over_background,
)
from avatar.drive.opening_transfer import (
    OpeningTransfer,
    cached_opening_transfer,
    measure_opening_transfer,
    measurement_frames,
)
from avatar.drive.phone_check import PhoneCheck, cached_phone_check, measure_phone_check
from avatar.drive.phonetic_mouth import MouthOpening, PhoneticBlend, blend_phonetic
from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.model.deformation import FrameConditions
from avatar.model.gaussians import GaussianSet
from avatar.model.landmark_motion import rest_motion, tracked_motion
from avatar.model.rigid import transform_gaussians
from avatar.model.talking_head import ClipSignals, TalkingHead
from avatar.model.torso import TorsoModel, bust_gaussians
from avatar.render.rasterize import render_gaussians
from avatar.runs.record import RunRecord
from avatar.runs.run_dir import RunLayout, load_model
from avatar.runs.torso_file import load_torso


@dataclass
class TorsoShare:
    """The Gaussian torso's part of a bust rendered in one pass: what its colour can be swapped out of."""

    rgb: Tensor  # [R, R, 3] the torso Gaussians' part of the bust's colour (premultiplied)
    weight: Tensor  # [R, R, 1] their part of its alpha: how much of each pixel is torso, in front of the head


@dataclass
class DrivenFrame:
    rgb: Tensor  # [R, R, 3] over the given background
    alpha: Tensor  # [R, R, 1]
    attention: Tensor | None  # [R, R, 4] attention over (articulation, eye, view, null), when asked for
    torso: TorsoShare | None = None  # a bust's torso part, when asked for


class HeadDriver:
    """Renders the head window of a fitted model for given conditions and poses, or with its torso the whole
    bust (no gradients)."""

    def __init__(
        self,
        model: TalkingHead,
        K_window: np.ndarray,
        resolution: int,
        backend: RasterizerName = "torch",
        torso: TorsoModel | None = None,
    ):
        self.model = model.eval()
        self.torso = torso
        self.device = next(model.parameters()).device
        self.K = torch.as_tensor(K_window, dtype=torch.float32, device=self.device)
        self.resolution = resolution
        self.backend = backend

    @torch.no_grad()
    def render(
        self,
        conditions: FrameConditions,
        viewmats: Tensor,  # [B, 4, 4]
        background: Tensor | None = None,
        *,
        with_attention: bool = False,
        mouth_scale: float = 1.0,
        K: Tensor | None = None,
        resolution: int | None = None,
    ) -> list[DrivenFrame]:
        """One DrivenFrame per frame of the batch; `mouth_scale` scales the articulation (TalkingHead); `K` [3, 3]
        and `resolution` frame another window than the run's head window (e.g. another camera's whole frame)."""
        K = self.K if K is None else K.to(self.device, torch.float32)
        resolution = self.resolution if resolution is None else resolution
        sets, attention = self.model(conditions.to(self.device), deform=True, mouth_scale=mouth_scale)
        frames = []
        for b, gaussians in enumerate(sets):
            viewmat = viewmats[b].to(self.device, torch.float32)
            out = render_gaussians(gaussians, viewmat, K, resolution, background, backend=self.backend)
            attention_image = None
            if with_attention and attention is not None:
                weights = attention[b].mean(dim=1)  # [N, 4] averaged over heads
                attention_image = render_gaussians(
                    gaussians, viewmat, K, resolution, colors=weights, backend=self.backend
                ).rgb
            frames.append(DrivenFrame(out.rgb, out.alpha, attention_image))
        return frames

    @torch.no_grad()
    def render_bust(
        self,
        conditions: FrameConditions,
        head_pose: Tensor,  # [4, 4] head -> avatar frame
        camera: Tensor,  # [4, 4] avatar frame -> camera
        K: Tensor,  # [3, 3] of the rendered frame
        resolution: int,
        *,
        mouth_scale: float = 1.0,
        torso_share: bool = False,
    ) -> DrivenFrame:
        """One frame (batch of 1) of the head and the torso rasterized together (`bust_gaussians`); with
        `torso_share`, the torso's part of it too (the same pass, with more colour channels)."""
        if self.torso is None:
            raise ValueError("this run has no torso to render")
        head_pose = head_pose.to(self.device, torch.float32)
        sets, _ = self.model(conditions.to(self.device), deform=True, mouth_scale=mouth_scale)
        bust = bust_gaussians(sets[0], head_pose, self.torso(head_pose))
        colors = None
        if torso_share:
            is_torso = torch.zeros_like(bust.colors[:, :1])
            is_torso[sets[0].means.shape[0] :] = 1
            colors = torch.cat([bust.colors, bust.colors * is_torso, is_torso], dim=1)  # [N, 7]
        out = render_gaussians(
            bust, camera.to(self.device, torch.float32), K.to(self.device, torch.float32), resolution,
            colors=colors, backend=self.backend,
        )  # fmt: skip
        if not torso_share:
            return DrivenFrame(out.rgb, out.alpha, None)
        share = TorsoShare(out.rgb[..., 3:6], out.rgb[..., 6:7])
        return DrivenFrame(out.rgb[..., :3], out.alpha, None, share)


@dataclass
class FittedHead:
    """A fitted run, ready to drive: its model, the dataset it was fitted to and its head window."""

    driver: HeadDriver
    record: RunRecord
    step: int  # of the checkpoint loaded
    dataset: Dataset
    run_dir: Path

    @property
    def window(self) -> HeadWindow:
        return self.record.window

    @property
    def torso(self) -> TorsoModel | None:
        return self.driver.torso

    def in_avatar_frame(self, head: GaussianSet, head_pose: Tensor) -> GaussianSet:
        """A frame's head Gaussians (head frame) moved by `head_pose` [4, 4] (head -> avatar frame), followed by
        the torso's when the run has one (`bust_gaussians`' order): the whole avatar of that frame."""
        head_pose = head_pose.to(self.driver.device, torch.float32)
        if self.torso is None:
            return transform_gaussians(head, head_pose[:3, :3], head_pose[:3, 3])
        return bust_gaussians(head, head_pose, self.torso(head_pose))

    @cached_property
    def avatar_pose(self) -> np.ndarray:
        """[4, 4] the avatar frame -> the capture's camera (`avatar.data.avatar_frame`)."""
        tracking, train = self.dataset.tracking, self.dataset.split.train
        return avatar_pose(tracking, train[tracking.valid[train]])

    @property
    def bust_resolution(self) -> int:
        """Pixels of the side of a whole frame rendered at the head window's pixel density."""
        size = self.dataset.size
        return int(min(size, round(self.driver.resolution * size / self.window.side)))

    def render_capture_frame(
        self,
        conditions: FrameConditions,
        index: int,
        background: np.ndarray | None,
        *,
        mouth_scale: float = 1.0,
    ) -> np.ndarray:
        """-> [S, S, 3] float32 (or [S, S, 4] premultiplied RGBA with no background): capture frame `index`'s
        view, the head posed as in that frame, as `avatar render` shows it at the capture's camera: with the
        Gaussian torso rendered in the same pass, coloured by the frame's torso, where the run has one, else
        over the frame's own torso pixels."""
        if self.torso is None:
            viewmat = torch.from_numpy(self.dataset.tracking.viewmats[index : index + 1]).float()
            head = self.driver.render(conditions, viewmat, mouth_scale=mouth_scale)[0]
            return self.composite(head, index, background)
        bust = self.render_capture_bust(conditions, index, mouth_scale=mouth_scale)
        return self.composite(bust, index, background, window=HeadWindow(0, 0, self.dataset.size))

    def render_capture_bust(
        self, conditions: FrameConditions, index: int, *, mouth_scale: float = 1.0
    ) -> DrivenFrame:
        """The whole bust seen by capture frame `index`'s camera, the head posed as in that frame, with its
        torso's share (`HeadDriver.render_bust`); at `bust_resolution`."""
        tracking = self.dataset.tracking
        pose = self.avatar_pose
        return self.driver.render_bust(
            conditions,
            torch.from_numpy(np.linalg.inv(pose) @ tracking.viewmats[index]),
            torch.from_numpy(pose),
            torch.from_numpy(self.bust_intrinsics(tracking.intrinsics)),
            self.bust_resolution,
            mouth_scale=mouth_scale,
            torso_share=True,
        )

    def bust_intrinsics(self, intrinsics: np.ndarray) -> np.ndarray:
        """[..., 3, 3] cameras of the S x S frame -> the same for the frame rendered at `bust_resolution`."""
        return resampled_intrinsics(intrinsics, self.dataset.size, self.bust_resolution)

    @property
    def hears_phones(self) -> bool:
        """Whether the model's driving features include the phone channels (avatar/audio/driving.py)."""
        return self.driver.model.config.phone_classes > 0

    @cached_property
    def phone_check(self) -> PhoneCheck:
        """Whether the capture's phones predict its held-out mouth (avatar/drive/phone_check.py): measured on
        the first use of a checkpoint, then read back."""
        return cached_phone_check(RunLayout(self.run_dir).phone_check, self.step, self._measure_phone_check)

    @property
    def uses_phones(self) -> bool:
        """Whether the phones drive this run's mouth on its capture's frames: its model has phone channels and
        its capture's phones passed the phone check."""
        return self.hears_phones and self.phone_check.uses_phones

    def heard(self, speech: AlignedSpeech) -> AlignedSpeech | None:
        """The phones the model is given of `speech`: None for a model without phone channels, none (zero
        channels) where the phone check turned them off (new audio: `new_audio_signals`)."""
        if not self.hears_phones:
            return None
        if not self.phone_check.uses_phones:
            return AlignedSpeech(None, self.phone_check.summary())
        return speech

    def new_audio_signals(
        self,
        windows: np.ndarray,
        speech: AlignedSpeech,
        eye: np.ndarray,
        rotations: np.ndarray,
        translations: np.ndarray,
    ) -> ClipSignals:
        """The signals of new audio, with the mouth motion it drives, as a render shows it (before
        `with_phonetic_mouth`).

        Where the phone check turned the capture's phones off, the motion is the mean of the motion predicted
        with the audio's own phones and with its voice alone, and the rest of the model hears the voice alone.
        The check says only that the capture's language misleads the phones. New audio may be in that language,
        or in English, whose phones carry to the mouth; the mean scored at most 0.07 below the better of the two
        in either case, and above the worse (avatar/drive/phone_check.py).

        Args:
            windows: [F, steps, n_mels] the audio's log-mel windows (`audio_features_for_frames`)
            speech: its phones (`align_speech`), or none to drive the mouth by the voice alone
            eye: [F] eye openness; rotations: [F, 3, 3] and translations: [F, 3] the view token's camera
        """
        record, model, fps = self.record, self.driver.model, self.dataset.fps

        def signals_hearing(heard: AlignedSpeech | None) -> ClipSignals:
            features = driving_features(
                windows, record.fps, record.audio_features, record.audio_normalization, speech=heard
            )
            return ClipSignals(features, eye, rotations, translations)

        signals = signals_hearing(self.heard(speech))
        motion = clip_motion(model, signals, fps)
        if self.hears_phones and not self.uses_phones and speech.phones is not None:
            motion = 0.5 * (motion + clip_motion(model, signals_hearing(speech), fps))
        return replace(signals, motion=motion)

    def with_phonetic_mouth(
        self, signals: ClipSignals, speech: AlignedSpeech, gain: float
    ) -> tuple[ClipSignals, PhoneticBlend | None]:
        """New audio's `signals` (`new_audio_signals`) with a share of the phonetic mouth where their learned
        motion does not follow the audio's phones, and how much (None: the audio has no phones); `gain` is the
        articulation gain the clip is rendered with (avatar/drive/phonetic_mouth.py)."""
        if speech.phones is None or signals.motion is None:
            return signals, None
        motion, blend = blend_phonetic(
            np.asarray(signals.motion),
            speech.phones,
            self.dataset.fps,
            silence_motion(self.driver.model, signals),
            self.mouth_opening,
            self._speech_frames(signals),
            person_scale=self.opening_transfer.correction / gain if gain > 0 else 1.0,
        )
        return replace(signals, motion=motion), blend

    def _speech_frames(self, signals: ClipSignals) -> np.ndarray:
        """[S] the frames of `signals` loud enough to be speech on the capture's scale (`ArticulationLevel`)."""
        log_mel = np.asarray(signals.audio)[..., : self.record.audio_features.n_mels]
        return np.flatnonzero(speech_loudness(log_mel) >= self.articulation_level.speech_loudness)

    @cached_property
    def articulation_level(self) -> ArticulationLevel:
        """The capture's articulation amplitude, which driven clips are matched to (avatar/drive/articulation.py)."""
        train = self.dataset.split.train
        tracked = self._tracked_mouth
        loudness = self._capture_loudness
        return capture_level(tracked, rest_motion(tracked, loudness, train), loudness, train)

    @cached_property
    def mouth_opening(self) -> MouthOpening:
        """How the person's mouth opens over the capture's training frames with speech
        (avatar/drive/phonetic_mouth.py)."""
        train = self.dataset.split.train
        speech = train[self._capture_loudness[train] >= self.articulation_level.speech_loudness]
        return MouthOpening.from_tracking(self._tracked_mouth, speech)

    @cached_property
    def _tracked_mouth(self) -> np.ndarray:
        """[F, J, 3] the capture's tracked mouth motion (`MOUTH_AND_JAW` rows)."""
        return tracked_motion(self.dataset.tracking, MOUTH_AND_JAW)

    @cached_property
    def _capture_loudness(self) -> np.ndarray:
        """[F] the loudness of the capture's audio lined up with its frames (`speech_loudness`)."""
        log_mel = np.asarray(self.record.capture_signals(self.dataset, speech=None).audio)
        return speech_loudness(log_mel[..., : self.record.audio_features.n_mels])

    @cached_property
    def opening_transfer(self) -> OpeningTransfer:
        """How far the rendered mouth opens for the tracked motion against the real one
        (avatar/drive/opening_transfer.py): measured on the first use of a checkpoint, then read back."""
        return cached_opening_transfer(
            RunLayout(self.run_dir).opening_transfer, self.step, self._measure_transfer
        )

    def _measure_transfer(self) -> OpeningTransfer:
        """Renders training frames with their tracked motion, composited as a render is, against the real ones."""
        dataset, driver = self.dataset, self.driver
        signals = self.capture_signals()
        background = dataset.background()

        def conditions(index: int) -> FrameConditions:
            return signals.conditions([index], window=driver.model.window, device=driver.device)

        def render(index: int, frame_conditions: FrameConditions) -> np.ndarray:
            return to_uint8(self.render_capture_frame(frame_conditions, index, background))

        train = dataset.split.train
        frames = measurement_frames(train[dataset.tracking.valid[train]])
        tracked = self._tracked_mouth
        return measure_opening_transfer(render, conditions, dataset.frame, tracked, frames, self.step)

    def articulation_gain(self, signals: ClipSignals, frames: np.ndarray | None = None) -> float:
        """The mouth scale that matches the articulation of `signals` (its `frames`, default all) to the
        capture's, corrected for how far this head's rendered mouth opens (`opening_transfer`)."""
        gain = articulation_gain(
            self.driver.model, signals, self.articulation_level, self.dataset.fps, frames
        )
        return gain * self.opening_transfer.correction

    def with_predicted_motion(self, signals: ClipSignals) -> ClipSignals:
        """`signals` with the mouth motion their audio drives, as a render shows it: predicted for every frame
        and smoothed over time (`avatar.drive.articulation.clip_motion`)."""
        return replace(signals, motion=clip_motion(self.driver.model, signals, self.dataset.fps))

    def capture_driving(self) -> ClipSignals:
        """The capture's own signals (`capture_signals`) with the mouth motion they drive, as a render shows it:
        predicted with the phones, with the voice alone, or the two mixed, as the phone check says
        (`PhoneCheck.capture_phone_weight`)."""
        signals = self.with_predicted_motion(self.capture_signals())
        weight = self.phone_check.capture_phone_weight if self.hears_phones else 1.0
        if weight in (0.0, 1.0):  # the signals hear the phones, or the voice alone, already
            return signals
        return replace(signals, motion=weight * signals.motion + (1 - weight) * self._capture_motion(False))

    def _capture_motion(self, with_phones: bool) -> np.ndarray:
        """[F, J, 3] the mouth motion of the capture's audio (`clip_motion`), with its phones or with the phone
        channels zeroed (the voice alone)."""
        dataset = self.dataset
        speech = dataset.speech if with_phones else AlignedSpeech(None, "the phone check's voice alone")
        return clip_motion(
            self.driver.model, self.record.capture_signals(dataset, speech=speech), dataset.fps
        )

    def capture_signals(self) -> ClipSignals:
        """The capture's own driving signals, as the fit saw them (without phones where the phone check turned
        them off)."""
        return self.record.capture_signals(self.dataset, speech=self.heard(self.dataset.speech))

    def _measure_phone_check(self) -> PhoneCheck:
        """The motion path on the held-out frames, with the capture's phones and with zero phone channels."""
        dataset = self.dataset
        held_out = dataset.split.val[dataset.tracking.valid[dataset.split.val]]
        if not self.hears_phones:  # nothing to turn off
            return PhoneCheck(self.step, 0, float("nan"), float("nan"))
        tracked = self._tracked_mouth
        return measure_phone_check(self._capture_motion, tracked, held_out, self.step)

    def composite(
        self,
        head: DrivenFrame,
        torso_frame: int | None,
        background: np.ndarray | None,
        *,
        window: HeadWindow | None = None,
    ) -> np.ndarray:
        """-> [S, S, 3] float32 in [0, 1]: the head (rendered in `window`, default the run's head window) over
        `background`, with capture frame `torso_frame`'s torso (None: none but what `head` holds) pasted under
        it; a bust rendered with its torso's share (`render_bust`) lets that torso show through its Gaussian
        torso (`torso_coloured_by_frame`); with no background, [S, S, 4] premultiplied RGBA
        (`avatar.drive.compositor`)."""
        window = self.window if window is None else window
        rgb, alpha = head.rgb.cpu().numpy(), head.alpha.cpu().numpy()
        if torso_frame is None:
            return head_over(empty_base(background, self.dataset.size), rgb, alpha, window)
        masks = self.dataset.masks(torso_frame)
        base = torso_over_background(self.dataset.frame(torso_frame), masks, background)
        if head.torso is not None:
            if window.side != self.dataset.size:
                raise ValueError("a torso coloured by the frame needs the bust rendered over the whole frame")
            rgb, alpha = resampled(rgb, window.side), resampled(alpha, window.side)
            torso_rgb = resampled(head.torso.rgb.cpu().numpy(), window.side)
            weight = resampled(head.torso.weight.cpu().numpy(), window.side)
            rgb = torso_coloured_by_frame(rgb, torso_rgb, weight, base, masks)
        return head_over(base, rgb, alpha, window)


def load_fitted(
    run_dir: Path,
    *,
    device: DeviceName = "auto",
    backend: RasterizerName = "auto",
    dataset: Path | None = None,
) -> FittedHead:
    """Opens `run_dir` (an `avatar fit` output) and the dataset it was fitted to (or `dataset`, if it moved)."""
    fitted = load_model(run_dir, resolve_device(device))
    record = fitted.record
    dataset_path = Path(dataset) if dataset is not None else record.dataset
    if not dataset_path.is_dir():
        raise AvatarError(
            "the dataset this run was fitted to is not there any more",
            path=dataset_path,
            fix="Pass its new location with --dataset",
        )
    opened = Dataset(dataset_path)
    if opened.manifest.source != record.dataset_source:
        raise AvatarError(
            "this dataset was captured from a different video than the run was fitted to",
            path=dataset_path,
            fix="Pass the dataset the run was fitted to",
        )
    device = next(fitted.model.parameters()).device
    torso = load_torso(RunLayout(Path(run_dir)).torso, fitted.step, device)
    driver = HeadDriver(fitted.model, record.K_window, record.resolution, backend, torso)
    return FittedHead(driver, record, fitted.step, opened, Path(run_dir))
