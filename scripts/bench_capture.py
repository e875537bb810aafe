"""Throughput of `avatar capture` on this machine: frames per second of 512x512 capture, per stage.

    python scripts/bench_capture.py [VIDEO ...] [--json bench/results/capture_cpu.json]

Without a video it captures the built-in sample. Each clip is captured into a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_record import record_header

from avatar.core.atomic import write_json
from avatar.sample.clip import make_sample_clip
from capture.config import CaptureConfig
from capture.pipeline import run_capture


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
            frames = report.frames_total
            row = {
                "video": video.name,
                "frames": frames,
                "size": args.size,
                "seconds": round(wall, 3),
                "frames_per_second": round(frames / wall, 2),
                "realtime_factor": round(frames / wall / report.fps, 2),
                "stage_seconds": report.stage_seconds,
            }
            results.append(row)
            print(
                f"{video.name}: {frames} frames in {wall:.1f} s = {row['frames_per_second']:.1f} frames/s",
                flush=True,
            )
    output = {
        **record_header("capture throughput", torch.device("cpu"), __file__),
        "results": results,
    }
    if args.json:
        write_json(args.json, output)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
