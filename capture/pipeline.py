"""`avatar capture`: a video becomes a tracked dataset, stage by stage, resumable.

Each stage writes its outputs atomically and is then recorded as done in `capture_state.json`; a re-run skips
the stages recorded there and redoes any stage that was interrupted. `dataset.json` is written last, so a
directory without it is never taken for a finished dataset.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from avatar.audio.features import AudioFeatureConfig, audio_features_for_frames
from avatar.core.atomic import atomic_directory, write_bytes, write_json, write_npy, write_npz
from avatar.core.errors import AvatarError
from avatar.core.records import decode, encode
from avatar.data.dataset import DatasetLayout, Tracking, write_masks
from avatar.data.manifest import (
    AudioTrack,
    CaptureReport,
    DatasetManifest,
    FileFingerprint,
    PixelSquare,
    SourceVideo,
)
from avatar.face import mediapipe_models as models
from avatar.face.regions import face_hull, segment_masks
from avatar.media.audio_io import load_audio, save_wav
from capture.background import BackgroundAccumulator
from capture.concurrency import BackgroundWriter, prefetch
from capture.config import CaptureConfig
from capture.crop import SquareCrop, choose_crop
from capture.face_track import describe_frames, fill_gaps, select_largest_track
from capture.head_pose import DEFAULT_FOV_DEG, fit_head_pose
from capture.preview import contact_sheet
from capture.signals import face_signals
from capture.video_source import VideoInfo, iter_frames, probe_video, sample_frames

AUDIO_SAMPLE_RATE = 16000
MAX_FACES = 2
STATE_VERSION = 1


def _write_image(path: Path, image: np.ndarray, params: list[int]) -> None:
    """Writes an RGB or single-channel image; raises when OpenCV cannot."""
    data = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), data, params):
        raise OSError(f"could not write {path}")


def _progress(iterable, total: int, description: str):
    return tqdm(
        iterable, total=total, desc=f"capture: {description}", unit="frame", leave=False, dynamic_ncols=True
    )


class CaptureRun:
    def __init__(self, config: CaptureConfig):
        self.config = config
        self.layout = DatasetLayout(Path(config.out))
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def _prepare_output(self, source: dict, audio_source: dict | None) -> dict:
        root = self.layout.root
        if root.exists() and not root.is_dir():
            raise AvatarError("the output path is a file", path=root, fix="Pass a directory path to --out")
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise AvatarError(
                f"the output directory cannot be written ({error.strerror or error})",
                path=root,
                fix="Choose a --out directory you can write to",
            ) from error
        fresh = {
            "format": DatasetManifest.FORMAT,
            "state_version": STATE_VERSION,
            "source": source,
            "audio_source": audio_source,
            "settings": self.config.settings(),
            "stages": {},
        }
        if not self.layout.state.exists():
            if any(child.name != ".write-test" for child in root.iterdir()):
                raise AvatarError(
                    "the output directory is not empty and was not made by `avatar capture`",
                    path=root,
                    fix="Choose a new --out directory, or empty this one",
                )
            write_json(self.layout.state, fresh)
            return fresh
        try:
            state = json.loads(self.layout.state.read_text())
        except json.JSONDecodeError:
            state = {}
        if state.get("source", {}).get("sha256") not in (None, source["sha256"]):
            raise AvatarError(
                f"the output directory holds a capture of a different video ({state['source'].get('name')})",
                path=root,
                fix="Choose a new --out directory for this video, or delete the old one",
            )
        if (
            state.get("state_version") != STATE_VERSION
            or state.get("settings") != fresh["settings"]
            or state.get("audio_source") != audio_source
        ):
            self.warnings.append(
                "settings or audio changed since the last run: capturing again from the start"
            )
            self.layout.manifest.unlink(missing_ok=True)
            write_json(self.layout.state, fresh)
            return fresh
        return state

    def _stage(self, state: dict, name: str, work: Callable[[], dict | None]) -> dict:
        if name in state["stages"]:
            return state["stages"][name]
        start = time.perf_counter()
        result = work() or {}
        self.timings[name] = time.perf_counter() - start
        state["stages"][name] = result
        write_json(self.layout.state, state)
        return result

    # ---- the run ----------------------------------------------------------------------------------------
    def run(self) -> CaptureReport:
        config = self.config
        start = time.perf_counter()
        video = Path(config.video)
        info = probe_video(video)
        num_frames = info.num_output_frames(config.fps)
        if info.duration_s < config.min_seconds:
            raise AvatarError(
                f"the clip is {info.duration_s:.1f} s long, shorter than the {config.min_seconds:.0f} s capture needs",
                path=video,
                fix="Record at least a minute of talking for a usable avatar",
            )
        audio_path = Path(config.audio) if config.audio is not None else None
        if audio_path is None and not info.has_audio:
            raise AvatarError(
                "the video has no audio track",
                path=video,
                fix="Pass the speech recorded with it as --audio FILE (wav, flac, mp3, m4a)",
            )
        if audio_path is not None and not audio_path.is_file():
            raise AvatarError("no such audio file", path=audio_path, fix="Check the path given to --audio")
        state = self._prepare_output(
            encode(FileFingerprint.of(video)),
            None if audio_path is None else encode(FileFingerprint.of(audio_path)),
        )
        self.layout.manifest.unlink(missing_ok=True)

        self._stage(state, "audio", lambda: self._extract_audio(audio_path or video, num_frames))
        crop = SquareCrop.from_dict(
            self._stage(state, "locate", lambda: self._locate(info, num_frames))["crop"]
        )
        self._stage(state, "track", lambda: self._track(info, crop, num_frames))
        self._stage(state, "solve", lambda: self._solve(num_frames))
        self._stage(state, "masks", lambda: self._masks(num_frames))
        self._stage(state, "background", self._background)
        self._stage(state, "audio_features", lambda: self._audio_features(num_frames))
        self._stage(state, "split", lambda: self._split(num_frames))
        self._stage(state, "preview", lambda: self._preview(num_frames))

        report = self._report(info, crop, state, start, num_frames)
        report.write(self.layout.report)
        self._manifest(info, crop, state, num_frames).write(self.layout.manifest)
        return report

    # ---- records ----------------------------------------------------------------------------------------
    def _report(
        self, info: VideoInfo, crop: SquareCrop, state: dict, start: float, num_frames: int
    ) -> CaptureReport:
        config, stages = self.config, state["stages"]
        solve, background, split = stages["solve"], stages["background"], stages["split"]
        return CaptureReport(
            frames_total=num_frames,
            frames_tracked=solve["frames_tracked"],
            frames_interpolated=solve["frames_interpolated"],
            frames_missing=solve["frames_missing"],
            fps=config.fps,
            size=config.size,
            focal_px=solve["focal_px"],
            focal_estimated=solve["focal_estimated"],
            reprojection_error_px=solve["reprojection_error_px"],
            reprojection_error_px_max=solve["reprojection_error_px_max"],
            blinks=solve["blinks"],
            multi_face_frames=solve["multi_face_frames"],
            background_unseen_fraction=background["unseen_fraction"],
            background_face_found=background["face_found"],
            train_frames=split["train"],
            val_frames=split["val"],
            seconds=round(time.perf_counter() - start, 3),
            stage_seconds={name: round(value, 3) for name, value in self.timings.items()},
            source=SourceVideo(
                path=str(config.video),
                width=info.width,
                height=info.height,
                rotation_ccw_deg=info.rotation_ccw_deg,
                codec=info.codec,
                duration_s=info.duration_s,
                fps=info.source_fps,
            ),
            crop=PixelSquare(crop.x0, crop.y0, crop.side),
            warnings=tuple(self.warnings + solve.get("warnings", [])),
        )

    def _manifest(self, info: VideoInfo, crop: SquareCrop, state: dict, num_frames: int) -> DatasetManifest:
        features = dict(state["stages"]["audio_features"]["config"])
        shape = tuple(features.pop("shape"))
        return DatasetManifest(
            num_frames=num_frames,
            fps=self.config.fps,
            size=self.config.size,
            source=decode(FileFingerprint, state["source"]),
            audio=AudioTrack(
                AUDIO_SAMPLE_RATE, decode(FileFingerprint, state["audio_source"] or state["source"])
            ),
            audio_features=AudioFeatureConfig(**features),
            audio_features_shape=shape,
            crop=PixelSquare(crop.x0, crop.y0, crop.side),
            source_size=(info.width, info.height),
        )

    # ---- stages -----------------------------------------------------------------------------------------
    def _extract_audio(self, source: Path, num_frames: int) -> dict:
        audio = load_audio(source, AUDIO_SAMPLE_RATE)
        wanted = int(round(num_frames / self.config.fps * AUDIO_SAMPLE_RATE))
        if len(audio) < wanted:
            if len(audio) < 0.9 * wanted:
                self.warnings.append(
                    f"the audio ({len(audio) / AUDIO_SAMPLE_RATE:.1f} s) is shorter than the video "
                    f"({wanted / AUDIO_SAMPLE_RATE:.1f} s): padded with silence"
                )
            audio = np.pad(audio, (0, wanted - len(audio)))
        save_wav(self.layout.audio, audio[:wanted], AUDIO_SAMPLE_RATE)
        return {"samples": wanted, "source_seconds": len(audio) / AUDIO_SAMPLE_RATE}

    def _locate(self, info: VideoInfo, num_frames: int) -> dict:
        ticks = set(range(0, num_frames, max(1, num_frames // 100)))
        max_side = 960
        scale = min(1.0, max_side / max(info.width, info.height))
        boxes = []
        with models.face_detector(full_range=True) as detector:
            frames = prefetch(sample_frames(info, self.config.fps, ticks, max_side=max_side))
            for _, frame in _progress(frames, len(ticks), "locate face"):
                found = models.detect_face_boxes(detector, frame)
                if len(found):
                    largest = found[np.argmax((found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1]))]
                    boxes.append(largest[:4] / scale)
        sampled = len(ticks)
        if not boxes:
            raise AvatarError(
                f"no face was found in any of {sampled} frames sampled over the clip",
                path=info.path,
                fix="Record the video facing the camera, with the face well lit and unobstructed",
            )
        crop = choose_crop(np.asarray(boxes), info.width, info.height)
        return {"crop": crop.to_dict(), "sampled_frames": sampled, "frames_with_face": len(boxes)}

    def _track(self, info: VideoInfo, crop: SquareCrop, num_frames: int) -> dict:
        size = self.config.size
        faces = np.zeros((num_frames, MAX_FACES, models.NUM_LANDMARKS, 3), dtype=np.float32)
        counts = np.zeros(num_frames, dtype=np.int64)
        background = BackgroundAccumulator(size)
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        mattes_dir = self.layout.root / "mattes"
        with (
            atomic_directory(mattes_dir) as mattes,
            atomic_directory(self.layout.frames) as frames,
            models.face_mesh(static_images=False, max_faces=MAX_FACES) as mesh,
            models.person_segmenter() as segmenter,
            BackgroundWriter() as writer,
            ThreadPoolExecutor(max_workers=1) as segmentation,
        ):
            crops = prefetch(crop.apply(frame, size) for frame in iter_frames(info, self.config.fps))
            for index, image in enumerate(_progress(crops, num_frames, "track face")):
                matte = segmentation.submit(models.person_mask, segmenter, image)
                found = models.mesh_landmarks(mesh, image)
                counts[index] = len(found)
                faces[index, : len(found)] = found[:MAX_FACES]
                person = np.round(matte.result() * 255).astype(np.uint8)
                writer.submit(_write_image, frames / f"{index:06d}.jpg", image, quality)
                writer.submit(
                    _write_image, mattes / f"{index:06d}.png", person, [cv2.IMWRITE_PNG_COMPRESSION, 1]
                )
                cover = None
                if len(found):
                    cover = np.zeros((size, size), np.uint8)
                    for face in found:
                        cover |= face_hull(face, size, margin_px=size // 32)
                background.add(image, person, cover)
        write_npz(self.layout.root / "faces_raw.npz", {"faces": faces, "counts": counts})
        write_npz(self.layout.root / "background_accum.npz", background.state())
        return {"frames_with_face": int((counts > 0).sum())}

    def _solve(self, num_frames: int) -> dict:
        config = self.config
        with np.load(self.layout.root / "faces_raw.npz") as raw:
            landmarks, found, multi = select_largest_track(raw["faces"], raw["counts"])
        track = fill_gaps(landmarks, found, int(round(config.max_gap_seconds * config.fps)), multi)
        missing = ~track.valid
        warnings = []
        if missing.mean() > config.max_missing_fraction:
            raise AvatarError(
                f"no face was tracked in {int(missing.sum())} of {num_frames} frames "
                f"({describe_frames(missing, config.fps)})",
                path=config.video,
                fix="Trim the clip to the part where the face is visible, or record again facing the camera",
            )
        if missing.any():
            warnings.append(
                f"{int(missing.sum())} frames without a face are left out of training: "
                f"{describe_frames(missing, config.fps)}"
            )
        if track.interpolated.any():
            warnings.append(
                f"{int(track.interpolated.sum())} frames interpolated over short gaps: "
                f"{describe_frames(track.interpolated, config.fps)}"
            )
        if multi:
            mask = np.zeros(num_frames, dtype=bool)
            mask[multi] = True
            warnings.append(
                f"several faces seen, the largest track is used: {describe_frames(mask, config.fps)}"
            )
        for warning in warnings:
            tqdm.write(f"warning: {warning}")
        pose = fit_head_pose(
            track.landmarks, track.valid, config.size, smoothing_sigma_frames=config.pose_smoothing_frames
        )
        if not pose.focal_estimated:
            warnings.append(
                f"the clip does not constrain the focal length: a {pose.focal_px:.0f} px focal ({DEFAULT_FOV_DEG:.0f} "
                "degree field of view of the crop) is assumed; a few seconds of slow head turning fixes that"
            )
        signals = face_signals(track.landmarks, track.valid)
        tracking = Tracking(
            landmarks=track.landmarks.astype(np.float32),
            found=track.found,
            interpolated=track.interpolated,
            valid=track.valid,
            intrinsics=pose.K,
            rotations=pose.rotations,
            translations=pose.translations,
            canonical_landmarks=pose.canonical,
            reprojection_error_px=pose.reprojection_error_px,
            eye_openness=signals.eye_openness,
            mouth_openness=signals.mouth_openness,
            blink=signals.blink,
        )
        write_npz(self.layout.tracking, tracking.to_arrays())
        errors = pose.reprojection_error_px[track.valid]
        return {
            "frames_tracked": int(track.found.sum()),
            "frames_interpolated": int(track.interpolated.sum()),
            "frames_missing": int(missing.sum()),
            "multi_face_frames": len(multi),
            "focal_px": float(pose.focal_px),
            "focal_estimated": bool(pose.focal_estimated),
            "reprojection_error_px": float(np.mean(errors)),
            "reprojection_error_px_max": float(np.max(errors)),
            "blinks": len(signals.blink_centers),
            "blink_centers": signals.blink_centers,
            "warnings": warnings,
        }

    def _masks(self, num_frames: int) -> dict:
        with np.load(self.layout.tracking) as arrays:
            landmarks, valid = arrays["landmarks"], arrays["valid"]
        mattes_dir = self.layout.root / "mattes"
        mattes = prefetch(
            cv2.imread(str(mattes_dir / f"{index:06d}.png"), cv2.IMREAD_GRAYSCALE)
            for index in range(num_frames)
        )
        with atomic_directory(self.layout.masks) as masks_dir, BackgroundWriter() as writer:
            for index, person in enumerate(_progress(mattes, num_frames, "masks")):
                masks = segment_masks(person, landmarks[index] if valid[index] else None)
                writer.submit(write_masks, masks_dir / f"{index:06d}.png", masks)
        shutil.rmtree(mattes_dir)
        return {}

    def _background(self) -> dict:
        accumulator = BackgroundAccumulator(self.config.size)
        with np.load(self.layout.root / "background_accum.npz") as arrays:
            accumulator.total, accumulator.count = arrays["total"], arrays["count"]
        plate, seen = accumulator.plate()
        with models.face_detector(full_range=False) as detector:
            faces_in_plate = len(models.detect_face_boxes(detector, plate))
        if faces_in_plate:
            self.warnings.append("a face is visible in the background plate; the person may not move enough")
        ok, data = cv2.imencode(".png", cv2.cvtColor(plate, cv2.COLOR_RGB2BGR))
        write_bytes(self.layout.background, data.tobytes())
        for name in ("faces_raw.npz", "background_accum.npz"):
            (self.layout.root / name).unlink(missing_ok=True)
        return {"unseen_fraction": float(1 - seen.mean()), "face_found": bool(faces_in_plate)}

    def _audio_features(self, num_frames: int) -> dict:
        audio = load_audio(self.layout.audio, AUDIO_SAMPLE_RATE)
        feature_config = AudioFeatureConfig(sample_rate=AUDIO_SAMPLE_RATE)
        features = audio_features_for_frames(audio, num_frames, self.config.fps, feature_config)
        write_npy(self.layout.audio_features, features.astype(np.float16))
        return {"config": asdict(feature_config) | {"shape": list(features.shape)}}

    def _split(self, num_frames: int) -> dict:
        with np.load(self.layout.tracking) as arrays:
            valid = arrays["valid"]
        boundary = int(round(num_frames * (1 - self.config.val_fraction)))
        indices = np.arange(num_frames)
        train = indices[(indices < boundary) & valid]
        val = indices[(indices >= boundary) & valid]
        write_json(self.layout.split, {"train": train.tolist(), "val": val.tolist()})
        return {"train": len(train), "val": len(val)}

    def _preview(self, num_frames: int) -> dict:
        contact_sheet(self.layout, num_frames)
        return {}


def run_capture(config: CaptureConfig) -> CaptureReport:
    """Runs (or finishes) a capture and returns its report."""
    return CaptureRun(config).run()
