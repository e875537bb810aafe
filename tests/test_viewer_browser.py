"""`avatar view` in a real browser: headless Chromium opens the page, sees the avatar, plays it, moves the
camera, records a camera path, exports a video and uploads audio."""

from __future__ import annotations

import os
import time

import av
import numpy as np
import pytest

from avatar.drive.camera_path import CameraPath
from avatar.media.audio_io import save_wav
from avatar.metrics.landmarks import FaceMeshRunner, mouth_opening
from avatar.sample.speech import synthesize_speech
from tests.viewer_browser import (
    CHROMIUM_ARGS,
    choose,
    chromium_path,
    close_notifications,
    drag,
    input_value,
    measure_playback,
    number_box,
    running_viewer,
    sample_playback,
    screenshot_array,
    wait_for_status,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

VIEWPORT = {"width": 960, "height": 540}
CANVAS = {"x": 0, "y": 0, "width": 540, "height": 540}  # left of the control panel
GREEN = np.array([0, 177, 64])


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI has no chromium: .ci/run must install Debian's chromium package")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return path


def _avatar_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of a screenshot over the green background that are not the background."""
    return np.abs(image.astype(int) - GREEN).sum(axis=-1) > 60


def _shown_frame(page) -> int:
    return int(float(input_value(page, "frame")))


def _seek(page, seconds: float, fps: float) -> int:
    box = number_box(page, "time (s)")
    box.fill(f"{seconds:.2f}")
    box.press("Enter")
    wanted = int(seconds * fps + 1e-6)
    for _ in range(200):
        if abs(_shown_frame(page) - wanted) <= 1:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(1500)  # the browser sorts and draws the new splats
    return _shown_frame(page)


def _picture_when(page, condition, timeout_s: float = 15.0) -> np.ndarray:
    """The canvas once `condition(picture)` holds (a busy machine draws a few frames a second), else the last."""
    deadline = time.monotonic() + timeout_s
    while True:
        picture = screenshot_array(page, CANVAS).astype(int)
        if condition(picture) or time.monotonic() > deadline:
            return picture
        page.wait_for_timeout(500)


def test_the_viewer_plays_the_avatar_in_chromium(chromium, sample_runs, tmp_path):
    from playwright.sync_api import sync_playwright

    run, _ = sample_runs["audio"]
    media = tmp_path / "media"
    media.mkdir()
    save_wav(media / "hello.wav", synthesize_speech(1.2, 16000, seed=3).audio, 16000)
    out = tmp_path / "view"
    arguments = [str(run), "--port", "0", "--media-dir", str(media), "--out", str(out), "--device", "cpu"]
    with (
        running_viewer([*arguments, "--max-upload-mb", "0.2"]) as viewer,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(viewer.url)
        text = wait_for_status(page, r"press play")
        assert "the capture's own audio" in text
        close_notifications(page)

        # the avatar is drawn: over a green background, a large region that is not green
        choose(page, "background", "green")
        page.wait_for_timeout(2000)
        still = screenshot_array(page, CANVAS)
        mask = _avatar_mask(still)
        assert 0.05 < mask.mean() < 0.9, mask.mean()
        rows, columns = np.nonzero(mask)
        assert 100 < columns.mean() < 500 and rows.max() > 400  # the bust, down to the frame's bottom

        # the mouth follows the audio: its opening in frames across the clip (paused on each)
        mesh = FaceMeshRunner()
        openings = []
        for seconds in np.linspace(0.4, 8.0, 6):
            _seek(page, seconds, 25.0)
            points = mesh.landmarks(screenshot_array(page, CANVAS))
            if points is not None:
                openings.append(mouth_opening(points))
        assert len(openings) >= 5
        assert max(openings) - min(openings) > 0.03, openings

        # playing: frames advance in the page, the mouth moves and the audio plays in the browser
        _seek(page, 0.0, 25.0)
        page.get_by_role("button", name="play").click()
        wait_for_status(page, r"playing")
        samples = sample_playback(page, 3000)
        played = measure_playback(samples, 25.0)
        assert played.frames_advanced >= 15, played
        # the sound plays in the browser as the frames advance (its offset from them is what
        # scripts/bench_viewer.py reports: here the browser draws without a GPU, a few times a second)
        heard = [sample for sample in samples if sample.audio_playing and sample.audio_s is not None]
        assert heard, "the browser never played the sound"
        seconds = (heard[-1].ms - heard[0].ms) / 1000
        assert seconds > 0.8 and heard[-1].audio_s - heard[0].audio_s > 0.5 * seconds
        playing = {}
        box = number_box(page, "time (s)")  # from near the start again (a seek keeps playing), so that
        box.fill("0.40")  # the clip does not end while a busy machine draws a few frames a second
        box.press("Enter")
        for _ in range(10):
            if len(playing) >= 3:
                break
            page.wait_for_timeout(300)
            frame, shot = _shown_frame(page), screenshot_array(page, CANVAS)
            points = mesh.landmarks(shot)
            if points is not None:
                playing[frame] = mouth_opening(points)
        mesh.close()
        assert len(playing) >= 3, playing  # different frames, each with a face
        assert max(playing.values()) - min(playing.values()) > 0.01, playing
        page.get_by_role("button", name="pause").click()
        page.wait_for_timeout(1000)
        paused_at = _shown_frame(page)
        page.wait_for_timeout(1000)
        assert _shown_frame(page) == paused_at

        # the camera: a drag turns the view, "capture camera" brings it back
        before = screenshot_array(page, CANVAS).astype(int)
        page.get_by_label("record camera path").check()
        drag(page, (270, 300), (400, 280))
        turned = _picture_when(page, lambda picture: np.abs(picture - before).mean() > 8)
        page.get_by_label("record camera path").uncheck()
        wait_for_status(page, r"recorded \d+ camera keyframes")
        assert np.abs(turned - before).mean() > 8
        page.get_by_role("button", name="capture camera").click()
        turned_by = np.abs(turned - before).mean()
        back = _picture_when(page, lambda picture: np.abs(picture - before).mean() < turned_by / 3)
        assert np.abs(back - before).mean() < np.abs(turned - before).mean() / 3

        # the server draws instead: the same view, as an image from the page's camera
        choose(page, "draw on", "server")
        wait_for_status(page, r"press play")
        page.wait_for_timeout(3000)  # the server's image replaces the splats
        drawn = _picture_when(page, lambda picture: np.abs(picture - back).mean() < turned_by)
        assert 0.05 < _avatar_mask(drawn.astype(np.uint8)).mean() < 0.9
        assert np.abs(drawn - back).mean() < turned_by
        _seek(page, 0.0, 25.0)  # the earlier playing left the clip near its end on a busy machine
        page.get_by_role("button", name="play").click()
        wait_for_status(page, r"playing")
        assert measure_playback(sample_playback(page, 3000), 25.0).frames_advanced >= 10  # ~7 fps on 2 cores
        page.get_by_role("button", name="pause").click()
        choose(page, "draw on", "browser")
        wait_for_status(page, r"press play")

        # uploads: too large, not audio, then a real one that plays
        page.set_input_files(
            "input[type=file]",
            files=[{"name": "big.wav", "mimeType": "audio/wav", "buffer": b"\0" * 300_000}],
        )
        wait_for_status(page, r"over the limit")
        page.set_input_files(
            "input[type=file]",
            files=[{"name": "fake.wav", "mimeType": "audio/wav", "buffer": b"not a wave" * 100}],
        )
        wait_for_status(page, r"could not be decoded as audio")
        page.set_input_files(
            "input[type=file]",
            files=[
                {"name": "mine.wav", "mimeType": "audio/wav", "buffer": (media / "hello.wav").read_bytes()}
            ],
        )
        wait_for_status(page, r"uploaded: mine\.wav: 30 frames")

        # export: the chosen audio with the recorded camera path, to an mp4
        choose(page, "audio", "hello.wav")
        wait_for_status(page, r"hello\.wav: 30 frames")
        page.get_by_role("button", name="export video").click()
        wait_for_status(page, r"exported", timeout_s=300)
        browser.close()
    videos = sorted(out.glob("view_*.mp4"))
    paths = sorted(out.glob("camera_path_*.json"))
    assert len(videos) == 1 and len(paths) == 1
    assert len(CameraPath.read(paths[0]).keyframes) >= 2
    with av.open(str(videos[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30
    assert not any(path.name.startswith("upload") for path in tmp_path.rglob("*"))
