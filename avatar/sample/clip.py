"""The built-in sample: a short talking clip made from a still portrait, with its motion known exactly.

The portrait is scikit-image's `astronaut()` (a real 512x512 photo that ships with the package, so nothing
is downloaded). Mediapipe's face mesh locates the lips, jaw and eyes once; every frame is then one
backward warp of the still (`cv2.remap`):

- mouth: the lower lip and jaw move down with the synthesised speech's syllable envelope, the upper lip
  and teeth lift a little, and the gap that opens between them is painted as a dark mouth cavity;
- blinks: the upper lids slide down over the eyes, stretching the lid skin below the brows;
- head: a small smooth roll and translation about a pivot in the neck, weighted by a soft head mask so
  the shoulders and background stay put.

The ground truth (`sample_ground_truth.json`) records the per-frame mouth opening, blink frames, head roll
and translation, which lets tests and demos check capture against known answers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatar.core.atomic import write_json
from avatar.media.video_writer import VideoWriter
from avatar.sample.speech import synthesize_speech

FORMAT_VERSION = 1
AUDIO_RATE = 16000
VIDEO_NAME = "sample.mp4"
GROUND_TRUTH_NAME = "sample_ground_truth.json"

# Mediapipe face-mesh landmark indices.
INNER_LOWER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
OUTER_UPPER_LIP_CENTRE = 0
NOSE_BASE = 2
CHIN = 152
FOREHEAD_TOP = 10
JAW_AT_CHIN = (150, 379)  # jaw line left and right of the chin
CHEEKS = (234, 454)  # widest points of the face oval
# Eye contours from outer to inner corner (image left eye first), upper lid then lower lid.
EYE_UPPER_LIDS = ([33, 246, 161, 160, 159, 158, 157, 173, 133], [263, 466, 388, 387, 386, 385, 384, 398, 362])
EYE_LOWER_LIDS = ([33, 7, 163, 144, 145, 153, 154, 155, 133], [263, 249, 390, 373, 374, 380, 381, 382, 362])

# Motion amplitudes, as fractions of the mouth width (which is about 40 px in the portrait).
JAW_DROP = 0.37  # lower-lip drop at full mouth opening
UPPER_LIP_LIFT = 0.1  # upper-lip lift, relative to the jaw drop
NECK_FALLOFF = 1.15  # distance below the chin over which the jaw motion fades out
HEAD_ROLL_DEG = 2.5
HEAD_SHIFT_PX = (3.0, 2.0)
JAW_WIDENING = 1.5  # the jaw-following band is this many jaw half-widths wide at the chin
HEAD_MASK_SOFTNESS = 0.35  # the head weight fades from 1 to 0 between 1 and 1.35 head-ellipse radii
LID_OVERSHOOT_PX = 1.0  # closed lids show the lash line from just above the upper-lid contour

CAVITY_RGB = np.array([[28.0, 8.0, 10.0], [62.0, 20.0, 24.0], [128.0, 58.0, 62.0]])  # shadow, throat, tongue


@dataclass(frozen=True)
class SampleClip:
    video: Path
    ground_truth: Path


@dataclass(frozen=True)
class SampleGroundTruth:
    fps: int
    seconds: float
    seed: int
    mouth_open: np.ndarray  # [N] in [0, 1]
    eye_closure: np.ndarray  # [N] in [0, 1], 1 = lids fully closed
    blink_frames: list[int]  # frames where the eyes are mostly closed (eye_closure >= 0.75)
    blink_centers: list[int]  # middle frame of each blink
    head_rotation_deg: np.ndarray  # [N] in-plane roll, counter-clockwise on screen
    head_translation_px: np.ndarray  # [N, 2] (x, y) shift of the head in pixels, applied after the roll
    head_pivot_px: (
        np.ndarray
    )  # [2] (x, y) the roll's centre: a head point p moves to R (p - pivot) + pivot + t

    @property
    def n_frames(self) -> int:
        return len(self.mouth_open)


def make_sample_clip(out_dir: Path, *, seconds: float = 12.0, fps: int = 25, seed: int = 0) -> SampleClip:
    """Write `out_dir/sample.mp4` (512x512, H.264 + AAC speech) and `out_dir/sample_ground_truth.json`.

    Nothing is written when both files exist and the ground truth records the same seconds, fps, seed and
    format version. The same arguments always give the same ground truth and soundtrack.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps}")
    out_dir = Path(out_dir)
    clip = SampleClip(video=out_dir / VIDEO_NAME, ground_truth=out_dir / GROUND_TRUTH_NAME)
    if clip.video.exists() and _recorded_parameters(clip.ground_truth) == _parameters(seconds, fps, seed):
        return clip

    # Remove the old ground truth first: a crash after the new video is in place must not leave them paired.
    clip.ground_truth.unlink(missing_ok=True)
    speech = synthesize_speech(seconds, AUDIO_RATE, seed)
    portrait = _portrait()
    rig = _FaceRig.fit(portrait, _still_landmarks(portrait))
    truth = _plan_motion(speech.envelope, seconds, int(fps), seed, rig.head_pivot)
    height, width = portrait.shape[:2]
    with VideoWriter(
        clip.video, int(fps), width, height, audio=speech.audio, audio_rate=AUDIO_RATE
    ) as writer:
        for i in range(truth.n_frames):
            writer.write(
                rig.render(
                    portrait,
                    mouth_open=float(truth.mouth_open[i]),
                    eye_closure=float(truth.eye_closure[i]),
                    rotation_deg=float(truth.head_rotation_deg[i]),
                    translation_px=truth.head_translation_px[i],
                )
            )
    write_json(clip.ground_truth, {**_parameters(seconds, fps, seed), "video": VIDEO_NAME, **_to_json(truth)})
    return clip


def load_sample_ground_truth(path: Path) -> SampleGroundTruth:
    data = json.loads(Path(path).read_text())
    return SampleGroundTruth(
        fps=int(data["fps"]),
        seconds=float(data["seconds"]),
        seed=int(data["seed"]),
        mouth_open=np.asarray(data["mouth_open"], dtype=np.float32),
        eye_closure=np.asarray(data["eye_closure"], dtype=np.float32),
        blink_frames=[int(i) for i in data["blink_frames"]],
        blink_centers=[int(i) for i in data["blink_centers"]],
        head_rotation_deg=np.asarray(data["head_rotation_deg"], dtype=np.float32),
        head_translation_px=np.asarray(data["head_translation_px"], dtype=np.float32).reshape(-1, 2),
        head_pivot_px=np.asarray(data["head_pivot_px"], dtype=np.float32),
    )


def _parameters(seconds: float, fps: int, seed: int) -> dict:
    return {"format_version": FORMAT_VERSION, "seconds": float(seconds), "fps": int(fps), "seed": int(seed)}


def _recorded_parameters(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return {key: data[key] for key in ("format_version", "seconds", "fps", "seed")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _to_json(truth: SampleGroundTruth) -> dict:
    def rounded(values: np.ndarray) -> list:
        return np.round(values.astype(np.float64), 5).tolist()

    return {
        "n_frames": truth.n_frames,
        "mouth_open": rounded(truth.mouth_open),
        "eye_closure": rounded(truth.eye_closure),
        "blink_frames": truth.blink_frames,
        "blink_centers": truth.blink_centers,
        "head_rotation_deg": rounded(truth.head_rotation_deg),
        "head_translation_px": rounded(truth.head_translation_px),
        "head_pivot_px": rounded(truth.head_pivot_px),
    }


# ---------------------------------------------------------------------------------------------------------
# Motion: what happens in each frame.


def _plan_motion(
    envelope: np.ndarray, seconds: float, fps: int, seed: int, head_pivot: np.ndarray
) -> SampleGroundTruth:
    """Per-frame mouth opening (from the speech envelope), blinks and head motion, rounded as stored."""
    n_frames = max(1, int(round(seconds * fps)))
    rng = np.random.default_rng([seed, 1])  # independent of the speech synthesiser's stream

    mouth_open = _mouth_open_per_frame(envelope, n_frames)
    times = np.arange(n_frames) / fps
    blink_centers = _blink_centers(seconds, fps, rng)
    eye_closure = np.zeros(n_frames)
    for centre in blink_centers:
        eye_closure = np.maximum(eye_closure, _blink_closure(times - centre / fps))
    rotation = HEAD_ROLL_DEG * _smooth_wander(times, rng)
    translation = np.stack([amplitude * _smooth_wander(times, rng) for amplitude in HEAD_SHIFT_PX], axis=1)

    def stored(values: np.ndarray) -> np.ndarray:
        return np.round(values.astype(np.float64), 5).astype(np.float32)

    eye_closure = stored(eye_closure)
    return SampleGroundTruth(
        fps=fps,
        seconds=float(seconds),
        seed=int(seed),
        mouth_open=stored(mouth_open),
        eye_closure=eye_closure,
        blink_frames=[int(i) for i in np.flatnonzero(eye_closure >= 0.75)],
        blink_centers=blink_centers,
        head_rotation_deg=stored(rotation),
        head_translation_px=stored(translation),
        head_pivot_px=stored(head_pivot),
    )


def _mouth_open_per_frame(envelope: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean envelope over each frame's interval, smoothed without delay (symmetric kernel), peak 1."""
    edges = np.linspace(0, len(envelope), n_frames + 1).round().astype(int)
    sums = np.add.reduceat(envelope.astype(np.float64), np.minimum(edges[:-1], len(envelope) - 1))
    per_frame = sums / np.maximum(np.diff(edges), 1)
    kernel = np.exp(-0.5 * (np.arange(-3, 4) / 0.8) ** 2)
    smoothed = np.convolve(np.pad(per_frame, 3, mode="edge"), kernel / kernel.sum(), mode="valid")
    peak = smoothed.max()
    return np.clip(smoothed / peak, 0.0, 1.0) if peak > 0 else smoothed


def _blink_centers(seconds: float, fps: int, rng: np.random.Generator) -> list[int]:
    """About one blink every 3-4 s at irregular times, none within 0.4 s of either end (less in clips under 1.6 s)."""
    margin = min(0.4, seconds / 4)
    count = max(1, int(round(seconds * rng.uniform(0.26, 0.34))))
    width = (seconds - 2 * margin) / count
    centres = margin + width * (np.arange(count) + rng.uniform(0.15, 0.85, size=count))
    return sorted({int(round(c * fps)) for c in centres})


def _blink_closure(dt: np.ndarray) -> np.ndarray:
    """Lid closure for a blink centred at dt = 0 s: close in 80 ms, hold 80 ms, reopen in 160 ms."""
    closing = _smoothstep((dt + 0.12) / 0.08)
    opening = 1.0 - _smoothstep((dt - 0.04) / 0.16)
    return np.minimum(closing, opening)


def _smooth_wander(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slow random signal within [-1, 1]: three sinusoids between 0.07 and 0.4 Hz."""
    amplitudes = rng.uniform(0.5, 1.0, size=3)
    frequencies = rng.uniform(0.07, 0.4, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    waves = np.sin(2 * np.pi * frequencies[:, None] * times[None, :] + phases[:, None])
    return (amplitudes[:, None] * waves).sum(axis=0) / amplitudes.sum()


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# ---------------------------------------------------------------------------------------------------------
# Rendering: one backward warp of the still per frame.


def _portrait() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, :3])


def _still_landmarks(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [478, 2] face-mesh landmarks in pixels."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=1
    ) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("mediapipe found no face in the sample portrait")
    height, width = image.shape[:2]
    return np.array([(p.x * width, p.y * height) for p in result.multi_face_landmarks[0].landmark])


@dataclass(frozen=True)
class _EyeRig:
    columns: np.ndarray  # [C] int image columns the lid covers
    upper: np.ndarray  # [C] upper-lid contour row per column
    opening: np.ndarray  # [C] lower-lid row minus upper-lid row (0 at the corners)
    stretch: float  # rows above the lid over which the lid skin stretches when it closes


@dataclass(frozen=True)
class _FaceRig:
    """Where the mouth, jaw, eyes and head are in the still, and how each part moves."""

    shape: tuple[int, int]
    mouth_centre_x: float
    mouth_half_width: float
    jaw_half_width: float
    lip_cut: np.ndarray  # [W] row of the inner lower lip per column (the seam that opens), NaN outside
    corner_row: float
    chin_row: float
    nose_base_row: float
    upper_lip_row: float
    jaw_drop_px: float
    neck_falloff_px: float
    mouth_rows: tuple[int, int]  # rows [start, stop) the jaw and lip motion reaches
    mouth_columns: tuple[int, int]  # columns [start, stop) the jaw and lip motion reaches
    eyes: tuple[_EyeRig, ...]
    head_pivot: np.ndarray  # [2] (x, y)
    region: tuple[slice, slice]  # rows and columns of the still that move at all; the rest is copied
    region_x: np.ndarray  # [h, w] float32 column of each pixel of the region
    region_y: np.ndarray  # [h, w] float32 row of each pixel of the region
    head_weight: np.ndarray  # [h, w] float32 in [0, 1], how rigidly each pixel of the region follows the head

    @staticmethod
    def fit(image: np.ndarray, landmarks: np.ndarray) -> _FaceRig:
        height, width = image.shape[:2]
        lm = landmarks[:, :2]
        corners = lm[[INNER_LOWER_LIP[0], INNER_LOWER_LIP[-1]]]
        mouth_width = float(np.linalg.norm(corners[1] - corners[0]))
        mouth_centre_x = float(corners[:, 0].mean())
        lower = lm[INNER_LOWER_LIP]
        order = np.argsort(lower[:, 0])
        columns = np.arange(width, dtype=np.float64)
        inside = (columns > lower[:, 0].min()) & (columns < lower[:, 0].max())
        lip_cut = np.where(inside, np.interp(columns, lower[order, 0], lower[order, 1]), np.nan)
        chin = lm[CHIN]
        jaw_half_width = float(lm[JAW_AT_CHIN[1]][0] - lm[JAW_AT_CHIN[0]][0]) / 2
        neck_falloff_px = NECK_FALLOFF * mouth_width
        mouth_rows = (
            max(0, math.floor(lm[NOSE_BASE][1]) - 1),
            min(height, math.ceil(chin[1] + neck_falloff_px) + 2),
        )
        reach = JAW_WIDENING * jaw_half_width + 1
        mouth_columns = (
            max(0, math.floor(mouth_centre_x - reach)),
            min(width, math.ceil(mouth_centre_x + reach) + 1),
        )

        eyes = tuple(
            _fit_eye(lm[upper_ids], lm[lower_ids])
            for upper_ids, lower_ids in zip(EYE_UPPER_LIDS, EYE_LOWER_LIDS)
        )
        face_height = float(chin[1] - lm[FOREHEAD_TOP][1])
        face_width = float(lm[CHEEKS[1]][0] - lm[CHEEKS[0]][0])
        head_top = lm[FOREHEAD_TOP][1] - 0.55 * face_height  # the hair reaches about this far above the brow
        head_centre = np.array([(lm[CHEEKS[0]][0] + lm[CHEEKS[1]][0]) / 2, (head_top + chin[1] + 5) / 2])
        head_axes = np.array([0.85 * face_width, (chin[1] + 5 - head_top) / 2])
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        radius = np.hypot((xx - head_centre[0]) / head_axes[0], (yy - head_centre[1]) / head_axes[1])
        head_weight = (1.0 - _smoothstep((radius - 1.0) / HEAD_MASK_SOFTNESS)).astype(np.float32)

        moving_rows, moving_columns = np.nonzero(head_weight > 0)
        region = (
            slice(min(moving_rows.min(), mouth_rows[0]), max(moving_rows.max() + 1, mouth_rows[1])),
            slice(
                min(moving_columns.min(), mouth_columns[0]), max(moving_columns.max() + 1, mouth_columns[1])
            ),
        )
        return _FaceRig(
            shape=(height, width),
            mouth_centre_x=mouth_centre_x,
            mouth_half_width=mouth_width / 2,
            jaw_half_width=jaw_half_width,
            lip_cut=lip_cut,
            corner_row=float(corners[:, 1].mean()),
            chin_row=float(chin[1]),
            nose_base_row=float(lm[NOSE_BASE][1]),
            upper_lip_row=float(lm[OUTER_UPPER_LIP_CENTRE][1]),
            jaw_drop_px=JAW_DROP * mouth_width,
            neck_falloff_px=neck_falloff_px,
            mouth_rows=mouth_rows,
            mouth_columns=mouth_columns,
            eyes=eyes,
            head_pivot=np.array([chin[0], chin[1] + 0.35 * face_height]),
            region=region,
            region_x=np.ascontiguousarray(xx[region]),
            region_y=np.ascontiguousarray(yy[region]),
            head_weight=np.ascontiguousarray(head_weight[region]),
        )

    def render(
        self,
        image: np.ndarray,
        *,
        mouth_open: float,
        eye_closure: float,
        rotation_deg: float,
        translation_px: np.ndarray,
    ) -> np.ndarray:
        """The still with the mouth opened, lids lowered and head moved: [H, W, 3] uint8 RGB."""
        face_rows, cavity_alpha, cavity_rgb = self._face_rows(mouth_open, eye_closure)
        head_x, head_y = self._inverse_head_motion(rotation_deg, np.asarray(translation_px, dtype=np.float64))
        source_y = cv2.remap(face_rows, head_x, head_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        moved = cv2.remap(image, head_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if cavity_alpha is not None:
            alpha = cv2.remap(cavity_alpha, head_x, head_y, cv2.INTER_LINEAR, borderValue=0)[:, :, None]
            colour = cv2.remap(cavity_rgb, head_x, head_y, cv2.INTER_LINEAR, borderValue=0)
            moved = (moved * (1 - alpha) + colour * alpha + 0.5).clip(0, 255).astype(np.uint8)
        frame = image.copy()
        frame[self.region] = moved
        return frame

    def _face_rows(
        self, mouth_open: float, eye_closure: float
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Backward map of the face-local motion, which is purely vertical: for each pixel of the still, the
        source row. Also the mouth cavity's coverage [H, W] and colour [H, W, 3] where the mouth opens."""
        height, width = self.shape
        rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width)).copy()
        cavity_alpha = cavity_rgb = None
        if mouth_open > 0:
            cavity_alpha, cavity_rgb = self._open_mouth(rows, mouth_open)
        if eye_closure > 0:
            for eye in self.eyes:
                _close_lid(rows, eye, eye_closure)
        return rows, cavity_alpha, cavity_rgb

    def _open_mouth(self, rows: np.ndarray, mouth_open: float) -> tuple[np.ndarray, np.ndarray]:
        """Write the mouth's backward rows into `rows`; return the cavity coverage and colour.

        The forward motion y -> y + d(x, y) is monotonic in y within each column except for a jump where the
        inner lower lip parts from the teeth, so each column is inverted exactly by interpolation.
        """
        height, width = self.shape
        drop = self.jaw_drop_px * mouth_open
        top, bottom = self.mouth_rows
        left, right = self.mouth_columns
        source = np.arange(top, bottom, dtype=np.float64)
        columns = np.arange(left, right)
        lower = source[:, None] + drop * self._jaw_weight(columns[None, :], source[:, None])
        upper = source[:, None] - UPPER_LIP_LIFT * drop * self._upper_lip_weight(
            columns[None, :], source[:, None]
        )
        below_corners = source[:, None] > self.corner_row
        cuts = self.lip_cut[left:right]
        seam_tops = cuts - UPPER_LIP_LIFT * drop * self._upper_lip_weight(columns, cuts)
        seam_bottoms = cuts + drop * self._jaw_weight(columns, cuts)
        cavity_alpha = np.zeros((height, width), np.float32)
        cavity_rgb = np.zeros((height, width, 3), np.float32)
        for i, x in enumerate(columns):
            cut = cuts[i]
            if np.isnan(cut):
                moved = np.where(below_corners[:, 0], lower[:, i], upper[:, i])
                rows[top:bottom, x] = np.interp(source, moved, source)
                continue
            above = source <= cut
            moved = np.concatenate([upper[above, i], [seam_tops[i], seam_bottoms[i]], lower[~above, i]])
            origin = np.concatenate([source[above], [cut, cut], source[~above]])
            rows[top:bottom, x] = np.interp(source, moved, origin)
            _paint_cavity(cavity_alpha[:, x], cavity_rgb[:, x], seam_tops[i], seam_bottoms[i])
        return cavity_alpha, cavity_rgb

    def _jaw_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How far the point (x, y) below the lips follows the jaw: 1 at the lower-lip centre and chin,
        0 at the mouth corners and outside a band that widens to beyond the jaw line at the chin, fading
        into the neck."""
        depth = np.clip((y - self.corner_row) / max(self.chin_row - self.corner_row, 1.0), 0.0, 1.0)
        half_width = (
            self.mouth_half_width + (JAW_WIDENING * self.jaw_half_width - self.mouth_half_width) * depth**0.7
        )
        u = np.clip(np.abs(x - self.mouth_centre_x) / half_width, 0.0, 1.0)
        lateral = (1 - u * u) ** 2
        neck = 1.0 - _smoothstep((y - self.chin_row) / self.neck_falloff_px)
        return np.where(y > self.corner_row, lateral * neck, 0.0)

    def _upper_lip_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How far (x, y) follows the upper lip's lift: 1 on the upper lip and teeth, 0 at the nose."""
        u = np.clip(np.abs(x - self.mouth_centre_x) / self.mouth_half_width, 0.0, 1.0)
        lateral = (1 - u * u) ** 2
        vertical = _smoothstep((y - self.nose_base_row) / max(self.upper_lip_row - self.nose_base_row, 1.0))
        return lateral * vertical

    def _inverse_head_motion(
        self, rotation_deg: float, translation: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward map of the head's roll and shift over the region: [h, w] source x and y per pixel.

        The forward motion moves each point by weight(p) * (rigid(p) - p); it is inverted by fixed-point
        iteration, which converges because the weight changes slowly relative to the motion.
        """
        angle = math.radians(-rotation_deg)  # image y points down: negate for counter-clockwise on screen
        cos, sin = math.cos(angle), math.sin(angle)
        xx, yy = self.region_x, self.region_y
        px, py = self.head_pivot
        rigid_x = cos * (xx - px) - sin * (yy - py) + px + translation[0]
        rigid_y = sin * (xx - px) + cos * (yy - py) + py + translation[1]
        shift = np.stack([(rigid_x - xx) * self.head_weight, (rigid_y - yy) * self.head_weight], axis=-1)
        shift = shift.astype(np.float32)
        # The shift field covers the region only, so it is sampled in region coordinates.
        top, left = self.region[0].start, self.region[1].start
        source_x, source_y = xx, yy
        for _ in range(6):
            moved = cv2.remap(
                shift,
                source_x - left,
                source_y - top,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            source_x, source_y = xx - moved[:, :, 0], yy - moved[:, :, 1]
        return source_x, source_y


def _fit_eye(upper_lid: np.ndarray, lower_lid: np.ndarray) -> _EyeRig:
    """Per-column lid rows between the eye corners, from [K, 2] upper and lower contour points."""
    x0, x1 = (
        float(min(upper_lid[:, 0].min(), lower_lid[:, 0].min())),
        float(max(upper_lid[:, 0].max(), lower_lid[:, 0].max())),
    )
    columns = np.arange(int(math.floor(x0)), int(math.ceil(x1)) + 1)
    upper = np.interp(columns, *upper_lid[np.argsort(upper_lid[:, 0])].T)
    lower = np.interp(columns, *lower_lid[np.argsort(lower_lid[:, 0])].T)
    opening = np.clip(lower - upper, 0.0, None) * (columns > x0) * (columns < x1)
    return _EyeRig(columns=columns, upper=upper, opening=opening, stretch=2.2 * float(opening.max()))


def _close_lid(rows: np.ndarray, eye: _EyeRig, closure: float) -> None:
    """Slide the upper lid down by `closure` of the eye's opening; the skin above it stretches to follow.

    Backward: an output pixel just above the lowered lid edge shows the lash line, pixels above it show
    lid skin from progressively closer to its original place, and the eye below the edge is unchanged.
    """
    height = rows.shape[0]
    for column, upper, opening in zip(eye.columns, eye.upper, eye.opening):
        if opening <= 0 or not 0 <= column < rows.shape[1]:
            continue
        edge = upper + closure * opening
        lift = closure * (opening + LID_OVERSHOOT_PX)
        start = int(max(0, math.floor(edge - eye.stretch)))
        stop = int(min(height, math.ceil(edge)))
        y = np.arange(start, stop, dtype=np.float32)
        weight = _smoothstep((y - (edge - eye.stretch)) / eye.stretch) * (y < edge)
        rows[start:stop, column] -= (lift * weight).astype(np.float32)


def _paint_cavity(alpha: np.ndarray, rgb: np.ndarray, top: float, bottom: float) -> None:
    """Fill rows (top, bottom) of one column with the mouth interior, anti-aliased at both ends."""
    if bottom - top < 0.05:
        return
    rows = np.arange(int(math.floor(top)), int(math.ceil(bottom)) + 1)
    rows = rows[(rows >= 0) & (rows < len(alpha))]
    coverage = np.clip(rows - top + 0.5, 0, 1) * np.clip(bottom - rows + 0.5, 0, 1)
    depth = np.clip((rows - top) / max(bottom - top, 1.0), 0, 1)[:, None]
    tongue = np.clip((bottom - top - 6.0) / 8.0, 0, 1)  # the tongue shows only when the mouth is well open
    shade = np.where(
        depth < 0.35, CAVITY_RGB[0] + (CAVITY_RGB[1] - CAVITY_RGB[0]) * depth / 0.35, CAVITY_RGB[1]
    )
    shade = shade + (CAVITY_RGB[2] - CAVITY_RGB[1]) * tongue * _smoothstep((depth - 0.6) / 0.4)
    alpha[rows] = np.maximum(alpha[rows], coverage)
    rgb[rows] = shade
