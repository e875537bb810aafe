"""Measure `avatar view` in headless Chromium: frames delivered while playing, the sound's offset from the
frames, the time from a camera move to the changed picture, the server's memory; optionally a screenshot.

    python scripts/bench_viewer.py RUN [--dataset DS] [--draw-on browser|server] [--canvas 256] [--seconds 6]
                                       [--json-dir bench/results] [--screenshot docs/viewer.png]

Also times, for comparison, what server-side rendering would cost: one frame deformed (the viewer's work)
and one frame rasterized at the canvas size with the PyTorch reference, on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_record import REPO, record_header, write_record  # noqa: E402

from avatar.core.pinhole import centered_intrinsics  # noqa: E402
from avatar.drive.driver import load_fitted  # noqa: E402
from avatar.drive.video import drive_with_audio  # noqa: E402
from avatar.render.rasterize import render_gaussians  # noqa: E402
from tests.viewer_browser import (  # noqa: E402
    CHROMIUM_ARGS,
    chromium_path,
    close_notifications,
    drag,
    input_value,
    measure_playback,
    running_viewer,
    sample_playback,
    screenshot_array,
    wait_for_status,
)
from viewers.frames import frame_splats  # noqa: E402


def server_side_costs(run: Path, dataset: Path | None, canvas: int, repeats: int = 3) -> dict:
    """Seconds to deform one frame (batch of 8, per frame) and to rasterize one on this machine's CPU."""
    fitted = load_fitted(run, device="cpu", backend="torch", dataset=dataset)
    clip = drive_with_audio(fitted, fitted.dataset.layout.audio)
    frames = np.arange(8)
    frame_splats(clip, frames)
    started = time.perf_counter()
    for _ in range(repeats):
        frame_splats(clip, frames)
    deform = (time.perf_counter() - started) / repeats / len(frames)
    model = fitted.driver.model
    with torch.no_grad():
        head = model(clip.signals.conditions([0], window=model.window), mouth_scale=clip.articulation_gain)[
            0
        ][0]
        avatar = fitted.in_avatar_frame(head, torch.from_numpy(clip.head_poses[0]))
        focal = float(fitted.dataset.tracking.intrinsics[0, 0]) * canvas / fitted.dataset.size
        K = torch.from_numpy(centered_intrinsics(focal, canvas)).float()
        camera = torch.from_numpy(fitted.avatar_pose).float()
        render_gaussians(avatar, camera, K, canvas, backend="torch")
        started = time.perf_counter()
        for _ in range(repeats):
            render_gaussians(avatar, camera, K, canvas, backend="torch")
        raster = (time.perf_counter() - started) / repeats
    return {"deform_seconds_per_frame": round(deform, 4), "rasterize_seconds_per_frame": round(raster, 3)}


def browser_drawing_rate(page, milliseconds: float = 2000) -> float:
    """Frames the page draws a second (requestAnimationFrame callbacks)."""
    count = page.evaluate(
        """async (ms) => { let n = 0; const start = performance.now();
            while (performance.now() - start < ms) { await new Promise(r => requestAnimationFrame(r)); n++; }
            return n; }""",
        milliseconds,
    )
    return count / (milliseconds / 1000)


def camera_move_latency_ms(page, canvas: int) -> float:
    """From the start of a drag to a screenshot that differs from the one before (an upper bound: it
    includes the drag's own events and the screenshots' time)."""
    region = {"x": 0, "y": 0, "width": canvas, "height": canvas}
    before = screenshot_array(page, region).astype(int)
    started = time.perf_counter()
    drag(page, (canvas * 0.45, canvas * 0.5), (canvas * 0.6, canvas * 0.5), steps=2)
    while time.perf_counter() - started < 10:
        if np.abs(screenshot_array(page, region).astype(int) - before).mean() > 2:
            return 1000 * (time.perf_counter() - started)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument(
        "--draw-on", choices=("browser", "server"), default="browser", help="avatar view --draw-on"
    )
    parser.add_argument("--canvas", type=int, default=256, help="the browser's canvas side, pixels")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to measure playing")
    parser.add_argument("--json-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--screenshot", type=Path, help="also save a 1280x720 screenshot of the page here")
    args = parser.parse_args()
    chromium = chromium_path()
    if chromium is None:
        sys.exit("no chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    arguments = [str(args.run), "--port", "0", "--device", "cpu", "--draw-on", args.draw_on]
    if args.dataset is not None:
        arguments += ["--dataset", str(args.dataset)]
    with running_viewer(arguments) as viewer, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(viewer.url)
        wait_for_status(page, r"press play")
        close_notifications(page)
        page.wait_for_timeout(3000)
        if args.screenshot is not None:
            page.screenshot(path=str(args.screenshot))
        page.get_by_role("button", name="play").click()
        wait_for_status(page, r"playing")
        page.set_viewport_size({"width": args.canvas, "height": args.canvas})
        page.wait_for_timeout(1000)
        samples = sample_playback(page, 1000 * args.seconds)
        played = measure_playback(samples, 25.0)
        server_fps = float(input_value(page, "frames/s") or "nan")
        drawing = browser_drawing_rate(page)
        memory_playing = viewer.rss_mb()
        page.set_viewport_size({"width": 1280, "height": 720})
        page.get_by_role("button", name="pause").click()
        page.wait_for_timeout(1000)
        page.set_viewport_size({"width": args.canvas, "height": args.canvas})
        page.wait_for_timeout(1000)
        latencies = [camera_move_latency_ms(page, args.canvas) for _ in range(3)]
        browser.close()
    record = record_header("avatar view in headless Chromium", torch.device("cpu"), __file__)
    record.update(
        chromium=chromium,
        canvas=args.canvas,
        run=str(args.run),
        draw_on=args.draw_on,
        rendering={
            "browser": "client-side: the server deforms and sends splats; Chromium draws them (SwiftShader, no GPU)",
            "server": "server-side: the server deforms and rasterizes (PyTorch) from the page's camera, sends JPEGs",
        }[args.draw_on],
        frames_delivered_per_second=round(played.frames_per_second, 2),
        frames_sent_per_second_by_the_server=server_fps,
        frames_advanced=played.frames_advanced,
        audio_lead_ms=None if played.audio_lead_ms is None else round(played.audio_lead_ms, 1),
        browser_draws_per_second=round(drawing, 2),
        camera_move_to_new_picture_ms=[round(v, 1) for v in latencies],
        camera_move_to_new_picture_ms_median=round(statistics.median(latencies), 1),
        server_memory_mb=round(memory_playing, 1),
        server_side_for_comparison=server_side_costs(args.run, args.dataset, args.canvas),
    )
    path = write_record(args.json_dir, "viewer", record)
    print(path)
    for key, value in record.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
