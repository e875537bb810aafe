"""Throughput of `avatar capture` on this machine: frames per second of 512x512 capture, per stage.

    python scripts/bench_capture.py [VIDEO ...] [--json bench/results/capture_cpu.json]

Without a video it captures the built-in sample. Each clip is captured into a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avatar.atomic import write_json  # noqa: E402
from avatar.sample_clip import make_sample_clip  # noqa: E402
from capture.config import CaptureConfig  # noqa: E402
from capture.pipeline import run_capture  # noqa: E402


def _commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "HEAD"], text=True, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        videos = args.videos or [make_sample_clip(Path(scratch) / "sample").video]
        for video in videos:
            start = time.perf_counter()
            report = run_capture(
                CaptureConfig(video=video, out=Path(scratch) / f"dataset_{video.stem}", size=args.size)
            )
            wall = time.perf_counter() - start
            frames = report["frames_total"]
            row = {
                "video": video.name,
                "frames": frames,
                "size": args.size,
                "seconds": round(wall, 3),
                "frames_per_second": round(frames / wall, 2),
                "realtime_factor": round(frames / wall / report["fps"], 2),
                "stage_seconds": report["stage_seconds"],
            }
            results.append(row)
            print(
                f"{video.name}: {frames} frames in {wall:.1f} s = {row['frames_per_second']:.1f} frames/s",
                flush=True,
            )
    output = {
        "benchmark": "capture throughput",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": _commit(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    if args.json:
        write_json(args.json, output)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
