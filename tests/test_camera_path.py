from __future__ import annotations

import json
import math

import numpy as np
import pytest

from avatar.core.errors import AvatarError
from avatar.core.pinhole import centered_intrinsics, project
from avatar.data.avatar_frame import avatar_pose, head_in_avatar
from avatar.data.dataset import Tracking
from avatar.drive.background import COLOURS, parse_background
from avatar.drive.camera_path import (
    CameraPath,
    look_at_viewmat,
    orbit_cameras,
    parse_orbit,
    path_cameras,
)

KEYFRAMES = [
    {"time": 0.0, "position": [0.0, 0.0, -0.6], "look_at": [0.0, 0.0, 0.0], "fov_deg": 30.0},
    {"time": 2.0, "position": [0.3, -0.05, -0.5], "look_at": [0.0, 0.02, 0.0], "fov_deg": 20.0},
    {"time": 4.0, "position": [-0.3, 0.0, -0.5], "look_at": [0.0, 0.0, 0.01], "fov_deg": 25.0},
]


def _write(tmp_path, data, name="path.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _path_data(keyframes=KEYFRAMES, **extra):
    return {"format": "splat-avatar-camera-path", "version": 1, "keyframes": keyframes, **extra}


def test_a_path_passes_through_its_keyframes_and_holds_at_the_ends(tmp_path):
    path = CameraPath.read(_write(tmp_path, _path_data()))
    assert len(path.keyframes) == 3 and path.up == (0.0, -1.0, 0.0)
    times = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 9.0])
    cameras = path_cameras(path, times, 256)
    assert cameras.viewmats.shape == (7, 4, 4) and cameras.focal_px.shape == (7,)
    for time, keyframe in ((0.0, 0), (2.0, 1), (4.0, 2), (-1.0, 0), (9.0, 2)):
        viewmat = cameras.viewmats[list(times).index(time)]
        centre = -viewmat[:3, :3].T @ viewmat[:3, 3]
        np.testing.assert_allclose(centre, KEYFRAMES[keyframe]["position"], atol=1e-9)
        K = centered_intrinsics(cameras.focal_px[list(times).index(time)], 256)
        pixel = project(np.array([KEYFRAMES[keyframe]["look_at"]]), viewmat[:3, :3], viewmat[:3, 3], K)[0]
        np.testing.assert_allclose(pixel, [128, 128], atol=1e-6)  # the look-at point is in the middle
    assert cameras.focal_px[2] == pytest.approx(0.5 * 256 / math.tan(math.radians(25.0) / 2))  # fov 30 -> 20
    up_in_image = cameras.viewmats[1][:3, :3] @ np.array([0.0, -1.0, 0.0])
    assert up_in_image[1] < -0.9  # the avatar's up is up in the image
    dense = path_cameras(path, np.linspace(0, 4, 201), 256).viewmats
    centres = np.einsum("tji,tj->ti", dense[:, :3, :3], -dense[:, :3, 3])
    velocity, acceleration = np.diff(centres, axis=0), np.diff(centres, 2, axis=0)
    assert (
        np.linalg.norm(acceleration, axis=1).max() < 0.1 * np.linalg.norm(velocity, axis=1).max()
    )  # no kinks


def test_two_keyframes_are_joined_by_a_line_and_one_holds_still(tmp_path):
    two = CameraPath.read(_write(tmp_path, _path_data(KEYFRAMES[:2])))
    middle = path_cameras(two, np.array([1.0]), 128).viewmats[0]
    centre = -middle[:3, :3].T @ middle[:3, 3]
    np.testing.assert_allclose(centre, [0.15, -0.025, -0.55], atol=1e-9)
    one = CameraPath.read(_write(tmp_path, _path_data(KEYFRAMES[:1]), "one.json"))
    still = path_cameras(one, np.array([0.0, 5.0]), 128).viewmats
    np.testing.assert_allclose(still[0], still[1])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _path_data([{k: v for k, v in KEYFRAMES[0].items() if k != "fov_deg"}]),
            "keyframe 0 lacks 'fov_deg'",
        ),
        ({"format": "splat-avatar-camera-path", "version": 1}, "'keyframes' is missing"),
        (_path_data([]), "at least one keyframe"),
        (_path_data([{**KEYFRAMES[0], "position": [0.0, float("nan"), 0.0]}]), "finite number"),
        (_path_data([{**KEYFRAMES[0], "time": float("inf")}]), "time must be a finite number"),
        (_path_data([{**KEYFRAMES[0], "position": [0.0, 0.0]}]), "list of 3 numbers"),
        (_path_data([{**KEYFRAMES[0], "fov_deg": 0.0}]), "outside 1 .. 170"),
        (_path_data([KEYFRAMES[1], KEYFRAMES[0]]), "times must increase"),
        (_path_data([{**KEYFRAMES[0], "look_at": [0.0, 0.0, -0.6]}]), "looks at its own position"),
        (_path_data([{**KEYFRAMES[0], "zoom": 2}]), "unknown keys"),
        ({**_path_data(), "format": "something-else"}, "not a splat-avatar-camera-path"),
        ({**_path_data(), "version": 7}, "version 7"),
        ("[1, 2", "not readable JSON"),
    ],
)
def test_a_bad_camera_path_is_refused_with_the_file_and_the_fix(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(AvatarError, match=message) as error:
        CameraPath.read(path)
    assert str(path) in str(error.value) and "docs/camera_path.md" in str(error.value)


def test_a_missing_camera_path_is_named(tmp_path):
    with pytest.raises(AvatarError, match="no such camera path") as error:
        CameraPath.read(tmp_path / "absent.json")
    assert "absent.json" in str(error.value)


def test_an_orbit_swings_the_capture_camera_about_the_avatar():
    capture = look_at_viewmat(
        np.array([0.02, 0.0, -0.55]), np.array([0.0, 0.01, 0.0]), np.array([0.0, -1, 0])
    )
    times = np.arange(100) / 25.0
    cameras = orbit_cameras(capture, 500.0, 30.0, times)
    np.testing.assert_allclose(cameras.viewmats[0], capture, atol=1e-12)  # starts at the capture's camera
    centres = np.stack([-v[:3, :3].T @ v[:3, 3] for v in cameras.viewmats])
    start = centres[0]
    np.testing.assert_allclose(np.linalg.norm(centres[:, [0, 2]], axis=1), np.linalg.norm(start[[0, 2]]))
    np.testing.assert_allclose(centres[:, 1], start[1])  # about the vertical axis: the height stays
    angles = np.degrees(np.arctan2(centres[:, 0], -centres[:, 2]) - np.arctan2(start[0], -start[2]))
    assert angles.max() == pytest.approx(30.0, abs=0.1) and angles.min() == pytest.approx(-30.0, abs=0.1)
    assert np.abs(np.diff(angles)).max() < 2.0  # smooth
    assert (cameras.focal_px == 500.0).all()


def test_orbit_text_is_parsed_or_refused():
    assert (
        parse_orbit("orbit:30") == 30.0 and parse_orbit("capture") is None and parse_orbit("x.json") is None
    )
    for bad, message in (
        ("orbit", "no angle"),
        ("orbit:abc", "no angle"),
        ("orbit:0", "angle must"),
        ("orbit:200", "angle must"),
    ):
        with pytest.raises(AvatarError, match=message):
            parse_orbit(bad)


def _tracking(rotations: np.ndarray, translations: np.ndarray) -> Tracking:
    n = len(rotations)
    return Tracking(
        landmarks=np.zeros((n, 478, 3), np.float32),
        found=np.ones(n, bool),
        interpolated=np.zeros(n, bool),
        valid=np.ones(n, bool),
        intrinsics=centered_intrinsics(500.0, 256),
        rotations=rotations,
        translations=translations,
        canonical_landmarks=np.zeros((478, 3)),
        reprojection_error_px=np.zeros(n),
        eye_openness=np.ones(n),
        mouth_openness=np.zeros(n),
        blink=np.zeros(n, bool),
    )


def test_the_avatar_frame_is_the_mean_head_pose():
    from scipy.spatial.transform import Rotation

    yaws = np.array([-10.0, 0.0, 10.0])
    rotations = Rotation.from_euler("y", yaws[:, None], degrees=True).as_matrix()
    translations = np.array([[0.0, 0.0, 0.5], [0.01, 0.0, 0.5], [0.02, 0.0, 0.5]])
    tracking = _tracking(rotations, translations)
    pose = avatar_pose(tracking, np.arange(3))
    np.testing.assert_allclose(pose[:3, :3], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(pose[:3, 3], [0.01, 0.0, 0.5])
    heads = head_in_avatar(tracking, pose)
    np.testing.assert_allclose(pose @ heads, tracking.viewmats, atol=1e-12)
    with pytest.raises(ValueError):
        avatar_pose(tracking, np.array([], int))


def test_backgrounds_are_parsed_from_names_colours_and_files(tmp_path):
    plate = np.full((8, 8, 3), 7, np.uint8)
    assert parse_background("plate").pixels(plate) is plate
    assert parse_background("transparent").transparent
    assert parse_background("Green").colour == COLOURS["green"]
    assert parse_background("#102030").pixels(plate)[3, 3].tolist() == [16, 32, 48]
    assert parse_background("ff0000").colour == (255, 0, 0)
    import cv2

    image = tmp_path / "beach.png"
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, :20] = (0, 0, 255)  # red (BGR) on the left half, cut away by the centred square
    picture[:, 20:] = (255, 0, 0)
    cv2.imwrite(str(image), picture)
    shown = parse_background(str(image)).pixels(plate)
    assert (
        shown.shape == (8, 8, 3)
        and shown[4, 0].tolist() == [255, 0, 0]
        and shown[4, 7].tolist() == [0, 0, 255]
    )
    with pytest.raises(AvatarError, match="not a known colour") as error:
        parse_background("mauve-ish")
    assert "#rrggbb" in str(error.value)
    with pytest.raises(AvatarError, match="no such image file") as error:
        parse_background(str(tmp_path / "absent.jpg"))
    assert "absent.jpg" in str(error.value)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(AvatarError, match="cannot read the background image"):
        parse_background(str(broken)).pixels(plate)
