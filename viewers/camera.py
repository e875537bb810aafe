"""Cameras between the viewer's scene and the avatar: the capture's camera, and camera moves recorded as a
camera path (docs/camera_path.md).

The scene is the avatar frame (`avatar.data.avatar_frame`: OpenCV axes, y down) in `SCENE_SCALE` units a metre;
viser's cameras use OpenCV axes too (x right, y down, z forward) and their `fov` is the vertical field of view.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from avatar.drive.camera_path import CameraKeyframe, CameraPath
from viewers.splat_buffer import SCENE_SCALE

SCENE_UP = (0.0, -1.0, 0.0)  # the avatar frame's direction shown upwards
MIN_KEYFRAME_SECONDS = 0.1  # camera moves closer together than this are one keyframe


@dataclass(frozen=True)
class ViewerCamera:
    """A camera of the viewer's scene."""

    position: tuple[float, float, float]  # scene units
    look_at: tuple[float, float, float]  # scene units
    up: tuple[float, float, float]  # the scene direction shown upwards
    fov: float  # vertical field of view, radians


def capture_camera(
    viewmat: np.ndarray, focal_px: float, size: int, *, scale: float = SCENE_SCALE
) -> ViewerCamera:
    """The capture's camera: `viewmat` [4, 4] avatar frame -> camera, focal length `focal_px` for its `size`
    square frame, looking along its axis at the depth of the avatar frame's origin."""
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    centre = -rotation.T @ translation
    forward = rotation[2]
    depth = max(float(-centre @ forward), 1e-3)
    return ViewerCamera(
        position=tuple((centre * scale).tolist()),
        look_at=tuple(((centre + depth * forward) * scale).tolist()),
        up=tuple((-rotation[1]).tolist()),
        fov=2.0 * math.atan(size / 2.0 / focal_px),
    )


def keyframe(time_s: float, camera: ViewerCamera, *, scale: float = SCENE_SCALE) -> CameraKeyframe:
    """A camera path keyframe (avatar frame, metres) of the viewer's `camera` at `time_s`."""
    return CameraKeyframe(
        time=round(float(time_s), 4),
        position=tuple(float(v) / scale for v in camera.position),
        look_at=tuple(float(v) / scale for v in camera.look_at),
        fov_deg=float(np.clip(math.degrees(camera.fov), 1.0, 170.0)),
    )


class CameraRecorder:
    """Camera moves while recording, as a `CameraPath` whose times count from the start of the recording."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self._keyframes: list[CameraKeyframe] = []
        self._latest: ViewerCamera | None = None

    @property
    def recording(self) -> bool:
        return self._started is not None

    def start(self, camera: ViewerCamera | None) -> None:
        """Starts a new recording, at `camera` when it is known."""
        with self._lock:
            self._started = self._clock()
            self._keyframes = []
            self._latest = None
        if camera is not None:
            self.moved(camera)

    def moved(self, camera: ViewerCamera) -> None:
        """The camera is now `camera`: a keyframe when recording and the last one is old enough, else the
        newest pose waits to replace it."""
        with self._lock:
            if self._started is None:
                return
            now = self._clock() - self._started
            if self._keyframes and now - self._keyframes[-1].time < MIN_KEYFRAME_SECONDS:
                self._latest = camera
                return
            self._keyframes.append(keyframe(now, camera))
            self._latest = None

    def stop(self) -> CameraPath | None:
        """Ends the recording: its path (the last pose included), or None when nothing was recorded."""
        with self._lock:
            if self._started is None:
                return None
            if self._latest is not None:
                last = self._keyframes[-1].time + MIN_KEYFRAME_SECONDS
                self._keyframes.append(keyframe(max(last, self._clock() - self._started), self._latest))
            keyframes, self._started, self._keyframes, self._latest = tuple(self._keyframes), None, [], None
        return CameraPath(keyframes, up=SCENE_UP) if keyframes else None
