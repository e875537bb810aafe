"""The camera of a render: `--camera capture|orbit:DEG|PATH.json` (docs/camera_path.md).

Cameras other than the capture's are placed in the avatar frame (`avatar.data.avatar_frame`). A camera path
file is a `CameraPath`: keyframes of time, position, look-at point and field of view, interpolated with a
natural cubic spline through the keyframes (positions and look-at points; linear for two keyframes) and
linearly (field of view), held before the first and after the last. `avatar view` writes the same format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.interpolate import CubicSpline

from avatar.core.errors import AvatarError
from avatar.core.pinhole import focal_from_fov
from avatar.core.records import Record

PATH_FIX = "Fix the camera path file as docs/camera_path.md describes, or pass --camera capture or orbit:DEG"
ORBIT_FIX = "Pass --camera capture, orbit:DEG (e.g. orbit:30, at most 90) or a camera path .json file"
MAX_ORBIT_DEG = 90.0


@dataclass(frozen=True)
class CameraKeyframe:
    time: float  # seconds from the start of the clip
    position: tuple[float, float, float]  # the camera's centre, metres, avatar frame
    look_at: tuple[float, float, float]  # the point at the image's centre, avatar frame
    fov_deg: float  # field of view across the (square) frame, degrees


@dataclass(frozen=True)
class CameraPath(Record):
    FORMAT: ClassVar[str] = "splat-avatar-camera-path"
    VERSION: ClassVar[int] = 1
    VERSION_FIX: ClassVar[str] = PATH_FIX

    keyframes: tuple[CameraKeyframe, ...]
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)  # the avatar frame's direction shown upwards

    @classmethod
    def read(cls, path: Path) -> CameraPath:
        """The camera path in `path`, checked key by key; AvatarError naming the file, the keyframe and the fix."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise AvatarError("there is no such camera path file", path=path, fix=PATH_FIX) from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise AvatarError(
                f"the camera path is not readable JSON ({error})", path=path, fix=PATH_FIX
            ) from error
        _check(data, path)
        return cls.from_json(data, path=path)


def _check(data: object, path: Path) -> None:
    def fail(message: str) -> AvatarError:
        return AvatarError(f"camera path: {message}", path=path, fix=PATH_FIX)

    if not isinstance(data, dict):
        raise fail("the file holds no JSON object")
    for key in ("format", "version", "keyframes"):
        if key not in data:
            raise fail(f"the key {key!r} is missing")
    keyframes = data["keyframes"]
    if not isinstance(keyframes, list) or not keyframes:
        raise fail("'keyframes' must be a list of at least one keyframe")
    if "up" in data:
        _vector(data["up"], "'up'", fail)
    times = []
    for index, keyframe in enumerate(keyframes):
        where = f"keyframe {index}"
        if not isinstance(keyframe, dict):
            raise fail(f"{where} is not an object")
        for key in ("time", "position", "look_at", "fov_deg"):
            if key not in keyframe:
                raise fail(f"{where} lacks {key!r}")
        unknown = set(keyframe) - {"time", "position", "look_at", "fov_deg"}
        if unknown:
            raise fail(f"{where} has unknown keys {sorted(unknown)}")
        time = _number(keyframe["time"], f"{where}'s time", fail)
        fov = _number(keyframe["fov_deg"], f"{where}'s fov_deg", fail)
        if not 1.0 <= fov <= 170.0:
            raise fail(f"{where}'s fov_deg {fov} is outside 1 .. 170 degrees")
        position = _vector(keyframe["position"], f"{where}'s position", fail)
        target = _vector(keyframe["look_at"], f"{where}'s look_at", fail)
        if np.linalg.norm(target - position) < 1e-6:
            raise fail(f"{where} looks at its own position")
        times.append(time)
    if np.any(np.diff(times) <= 0):
        raise fail("the keyframes' times must increase")


def _number(value: object, what: str, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _vector(value: object, what: str, fail) -> np.ndarray:
    if not isinstance(value, list) or len(value) != 3:
        raise fail(f"{what} must be a list of 3 numbers, got {value!r}")
    return np.array([_number(item, what, fail) for item in value])


@dataclass(frozen=True)
class CameraTrack:
    """A camera per frame: where it is in the avatar frame and how wide it sees."""

    viewmats: np.ndarray  # [T, 4, 4] avatar frame -> camera (OpenCV axes)
    focal_px: np.ndarray  # [T] for the output's S x S pixels


def look_at_viewmat(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """[4, 4] world -> camera of a camera at `position` looking at `target`, `up` shown upwards (the camera's -y)."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("the camera looks along its up direction")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    viewmat = np.eye(4)
    viewmat[:3, :3] = np.stack([right, down, forward])
    viewmat[:3, 3] = -viewmat[:3, :3] @ position
    return viewmat


def path_cameras(path: CameraPath, times: np.ndarray, size: int) -> CameraTrack:
    """The cameras of `path` at `times` [T] seconds, for S x S = `size` frames."""
    keys = path.keyframes
    key_times = np.array([key.time for key in keys])
    clamped = np.clip(times, key_times[0], key_times[-1])
    points = {name: np.array([getattr(key, name) for key in keys], float) for name in ("position", "look_at")}
    if len(keys) == 1:
        positions, targets = (np.repeat(points[name], len(times), 0) for name in ("position", "look_at"))
    elif len(keys) == 2:
        positions, targets = (
            np.stack([np.interp(clamped, key_times, points[name][:, k]) for k in range(3)], -1)
            for name in ("position", "look_at")
        )
    else:
        positions, targets = (
            CubicSpline(key_times, points[name], bc_type="natural")(clamped)
            for name in ("position", "look_at")
        )
    fov = np.interp(clamped, key_times, [key.fov_deg for key in keys])
    up = np.array(path.up, float)
    viewmats = np.stack([look_at_viewmat(p, t, up) for p, t in zip(positions, targets)])
    return CameraTrack(viewmats, np.array([focal_from_fov(f, size) for f in fov]))


def orbit_cameras(
    capture_view: np.ndarray, focal_px: float, degrees: float, times: np.ndarray
) -> CameraTrack:
    """The capture's camera swung about the avatar frame's vertical (y) axis through its origin, by
    degrees * sin(2 pi t / T) at `times` [T] over the clip's length T: out to +DEG, back, out to -DEG, back."""
    duration = max(float(times[-1]) + (times[1] - times[0] if len(times) > 1 else 1.0), 1e-6)
    angles = np.radians(degrees) * np.sin(2 * np.pi * np.asarray(times) / duration)
    viewmats = []
    for angle in angles:
        turn = np.eye(4)  # the camera's pose turned by `angle` about y: its view matrix turned by -angle
        c, s = math.cos(angle), math.sin(angle)
        turn[:3, :3] = [[c, 0, -s], [0, 1, 0], [s, 0, c]]
        viewmats.append(capture_view @ turn)
    return CameraTrack(np.stack(viewmats), np.full(len(angles), float(focal_px)))


def parse_orbit(text: str) -> float | None:
    """`orbit:DEG` -> DEG; None for any other --camera text; AvatarError for a malformed orbit."""
    if not text.startswith("orbit"):
        return None
    _, _, value = text.partition(":")
    try:
        degrees = float(value)
    except ValueError as error:
        raise AvatarError(f"--camera {text!r} gives no angle", fix=ORBIT_FIX) from error
    if not (math.isfinite(degrees) and 0 < degrees <= MAX_ORBIT_DEG):
        raise AvatarError(f"--camera {text!r}: the angle must be in (0, {MAX_ORBIT_DEG:g}]", fix=ORBIT_FIX)
    return degrees
