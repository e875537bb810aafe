"""Fitting speed per backend: `avatar fit` on one dataset with each (rasterizer, hash grid) pair, timed per stage.

    python scripts/bench_fit.py DATASET [--preset default] [--steps 1200] [--pairs cuda:cuda torch:torch]
                                [--device auto] [--out bench/results]

Each pair fits the preset's schedule scaled to `--steps` (all three stages in proportion, densification at the
same relative pace, so the Gaussian count grows as in a whole fit) into a fresh temporary run directory, with
the same seed. The training loop's own clock (train_log.csv's `seconds`: steps, densification, validation;
not the loading of the frames) gives each stage's seconds per step, from which the preset's whole schedule is
projected. Each pair's time is also given over the first pair's, so `--pairs cuda:cuda torch:torch` reports
how many times faster our kernels fit than the PyTorch reference.

Writes bench/results/fit-<processor>-<time>.json with the processor, versions, commit and command line.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from bench_record import REPO, record_header, write_record

from avatar.core.backends import resolve_device
from avatar.core.errors import AvatarError
from avatar.runs.settings import PRESETS, FitConfig
from avatar.train.trainer import run_fit


def stage_timings(log_path: Path) -> dict[str, dict]:
    """train_log.csv -> {stage: {steps, seconds, seconds_per_step, gaussians (at the stage's end)}}."""
    with open(log_path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise AvatarError("the training log has no steps", path=log_path, fix="Fit with --steps 1 or more")
    stages: dict[str, dict] = {}
    previous = 0.0
    for row in rows:
        seconds = float(row["seconds"])
        stage = stages.setdefault(row["stage"], {"steps": 0, "seconds": 0.0})
        stage["steps"] += 1
        stage["seconds"] += seconds - previous
        stage["gaussians"] = int(row["gaussians"])
        previous = seconds
    for stage in stages.values():
        stage["seconds_per_step"] = stage["seconds"] / stage["steps"]
    return stages


def projected_seconds(stages: dict[str, dict], preset: str) -> float:
    """The preset's whole schedule at each stage's measured seconds per step."""
    settings = PRESETS[preset]
    full = {
        "canonical": settings.steps_canonical,
        "audio": settings.steps_audio,
        "mouth": settings.steps_mouth,
    }
    return sum(full[name] * stage["seconds_per_step"] for name, stage in stages.items())


def bench_pair(
    dataset: Path, rasterizer: str, hash_grid: str, *, preset: str, steps: int, device: str, scratch: Path
) -> dict:
    out = scratch / f"{rasterizer}-{hash_grid}"
    config = FitConfig(
        dataset=dataset,
        out=out,
        preset=preset,
        steps=steps,
        device=device,
        backend=rasterizer,
        hash_grid=hash_grid,
        progress=False,
    )
    summary = run_fit(config)
    stages = stage_timings(out / "train_log.csv")
    seconds = sum(stage["seconds"] for stage in stages.values())
    return {
        "rasterizer": rasterizer,
        "hash_grid": hash_grid,
        "steps": summary.steps,
        "seconds": seconds,
        "seconds_per_step": seconds / summary.steps,
        "stages": stages,
        f"projected_{preset}_seconds": projected_seconds(stages, preset),
        "gaussians": summary.gaussians,
        "val_psnr": summary.val_psnr,
    }


def parse_pair(text: str) -> tuple[str, str]:
    rasterizer, _, hash_grid = text.partition(":")
    if not hash_grid:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not RASTERIZER:HASH_GRID, e.g. cuda:cuda or torch:torch"
        )
    return rasterizer, hash_grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path, help="a directory written by `avatar capture`")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument(
        "--steps", type=int, default=1200, help="the preset's schedule scaled to this many steps"
    )
    parser.add_argument(
        "--pairs", type=parse_pair, nargs="+", default=[("cuda", "cuda"), ("torch", "torch")],
        help="RASTERIZER:HASH_GRID backends to fit with, e.g. cuda:cuda gsplat:cuda torch:torch",
    )  # fmt: skip
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)

    try:
        device = resolve_device(args.device)
        results = []
        with tempfile.TemporaryDirectory() as scratch:
            for rasterizer, hash_grid in args.pairs:
                entry = bench_pair(
                    args.dataset,
                    rasterizer,
                    hash_grid,
                    preset=args.preset,
                    steps=args.steps,
                    device=args.device,
                    scratch=Path(scratch),
                )
                entry["time_over_first"] = entry["seconds"] / (results[0] if results else entry)["seconds"]
                results.append(entry)
                print(
                    f"{rasterizer}:{hash_grid}  {entry['steps']} steps in {entry['seconds']:.1f} s "
                    f"({1000 * entry['seconds_per_step']:.1f} ms/step, {entry['time_over_first']:.2f}x the first "
                    f"pair's time), {entry['gaussians']} Gaussians, val PSNR {entry['val_psnr']:.2f} dB",
                    flush=True,
                )
    except AvatarError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = {
        **record_header("fit", device, __file__, argv),
        "dataset": str(args.dataset.resolve()),
        "preset": args.preset,
        "steps": args.steps,
        "results": results,
    }
    print(f"wrote {write_record(args.out, 'fit', record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
