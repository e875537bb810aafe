"""Drive `avatar view` in headless Chromium (Debian's `chromium`, through playwright): start it, read its page,
measure what it delivers. Used by tests/test_viewer_browser.py and scripts/bench_viewer.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root
    "--use-angle=swiftshader",  # WebGL on the CPU
    "--enable-unsafe-swiftshader",
    "--autoplay-policy=no-user-gesture-required",
)
URL_LINE = re.compile(r"open (http://\S+) in a browser")


def chromium_path() -> str | None:
    """Debian's chromium, or another on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class ViewerProcess:
    process: subprocess.Popen
    url: str

    def rss_mb(self) -> float:
        """The server's resident memory now, MB (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def running_viewer(arguments: list[str], timeout: float = 120.0) -> Iterator[ViewerProcess]:
    """`avatar view ARGUMENTS` in a subprocess, until its address is printed; stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "avatar", "view", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise RuntimeError(f"avatar view exited with {process.returncode}:\n{''.join(lines)}")
            lines.append(line)
            match = URL_LINE.search(line)
            if match:
                yield ViewerProcess(process, match.group(1))
                return
        raise RuntimeError(f"avatar view printed no address in {timeout} s:\n{''.join(lines)}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def input_value(page, label: str) -> str:
    """The value shown in the page's input labelled `label`."""
    return page.evaluate(
        """(label) => {
            const found = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === label);
            return found ? document.getElementById(found.htmlFor).value : null;
        }""",
        label,
    )


def number_box(page, label: str):
    """The number input beside the page's slider labelled `label` (an element handle to fill)."""
    return page.evaluate_handle(
        """(label) => {
            const found = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === label);
            let node = document.getElementById(found.htmlFor);
            while (node && !node.querySelector('input[type=text]')) node = node.parentElement;
            return node.querySelector('input[type=text]');
        }""",
        label,
    ).as_element()


def choose(page, label: str, option: str) -> None:
    """Picks `option` in the page's dropdown labelled `label`."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def close_notifications(page) -> None:
    """Closes the notifications (such as Chromium's software-WebGL notice) that cover the canvas."""
    for button in page.locator(".mantine-Notification-closeButton").all():
        button.click()


def wait_for_status(page, pattern: str, timeout_s: float = 120.0) -> str:
    """Waits until the page's text matches the regular expression `pattern`; returns the page's text."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = page.inner_text("body")
        if re.search(pattern, text):
            return text
        page.wait_for_timeout(200)
    raise AssertionError(f"the page never showed {pattern!r}; it shows:\n{text[:2000]}")


@dataclass(frozen=True)
class PlaybackSample:
    ms: float  # since the sampling began
    frame: int  # the frame number the page shows
    audio_s: float | None  # where the browser's audio clip is, seconds
    audio_playing: bool


def sample_playback(page, milliseconds: float) -> list[PlaybackSample]:
    """The page's frame number and audio position every ~5 ms for `milliseconds`."""
    rows = page.evaluate(
        """async (ms) => {
            const label = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === 'frame');
            const input = document.getElementById(label.htmlFor);
            const rows = [];
            const start = performance.now();
            while (performance.now() - start < ms) {
                await new Promise(resolve => setTimeout(resolve, 5));  // not tied to the page's drawing
                const clips = window.__VISER_AUDIO__ ? window.__VISER_AUDIO__.debug() : [];
                const voice = clips.find(c => c.name === '/voice');
                rows.push([performance.now() - start, Number(input.value),
                           voice ? voice.position : null, voice ? voice.playing : false]);
            }
            return rows;
        }""",
        milliseconds,
    )
    return [PlaybackSample(ms, int(frame), audio, bool(playing)) for ms, frame, audio, playing in rows]


@dataclass(frozen=True)
class PlaybackMeasurement:
    frames_per_second: float  # new frames the page showed a second
    audio_lead_ms: float | None  # median of audio position - shown frame's middle; + : the sound is ahead
    frames_advanced: int


def measure_playback(samples: list[PlaybackSample], fps: float) -> PlaybackMeasurement:
    frames = np.array([s.frame for s in samples])
    times = np.array([s.ms for s in samples])
    changes = np.flatnonzero(np.diff(frames) != 0) + 1
    if len(changes) >= 2:
        rate = (len(changes) - 1) / ((times[changes[-1]] - times[changes[0]]) / 1000.0)
    else:
        rate = 0.0
    leads = [
        1000.0 * (s.audio_s - (s.frame + 0.5) / fps)
        for s in samples
        if s.audio_playing and s.audio_s is not None
    ]
    return PlaybackMeasurement(
        float(rate), float(np.median(leads)) if leads else None, int(frames.max() - frames.min())
    )


def screenshot_array(page, clip: dict | None = None) -> np.ndarray:
    """[H, W, 3] uint8 RGB of the page (or of `clip`: x, y, width, height)."""
    import cv2

    png = page.screenshot(clip=clip) if clip is not None else page.screenshot()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
    """A left-button drag on the page (orbits viser's camera)."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()
