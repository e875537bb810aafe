"""GPU benchmark of the rasterizer backends (and of a whole audio-driven frame), timed with CUDA events.

    python scripts/bench_render.py [--gaussians 10000 50000 200000] [--size 512] [--backends cuda gsplat torch]
                                   [--warmup 5] [--repeats 50] [--max-seconds 20] [--out bench/results]

For each backend and Gaussian count: forward (no autograd) and forward + backward (a loss on rgb, alpha and
depth, gradients w.r.t. every Gaussian parameter) of the head-like scene of scripts/bench_render_cpu.py at
size x size. Each measurement runs `--warmup` untimed iterations, then up to `--repeats` timed ones (fewer when
they exceed `--max-seconds`, at least 3), each between two CUDA events; it reports the median, 10th and 90th
percentile in milliseconds. Then, when avatar.model provides a TalkingHead, one whole driven frame per backend
(deformation of the canonical Gaussians from random audio, eye and view conditions, then the render), forward
and forward + backward; that part is skipped (and says why in the results) when the model cannot be built.

Writes bench/results/render-<gpu>-<time>.json with the GPU name, torch, CUDA and gsplat versions, the git
commit, the command line and every measurement; a backend that cannot run here is recorded with the reason.
Refuses to run without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "scripts"))
from bench_render_cpu import Scene, camera, head_blob  # noqa: E402

from avatar.render import rasterize  # noqa: E402


def time_cuda(fn: Callable[[], object], warmup: int, repeats: int, max_seconds: float) -> dict:
    """Milliseconds per call between CUDA events: median, 10th and 90th percentile, and the samples."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < repeats and (len(samples) < 3 or time.perf_counter() - started < max_seconds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p10": ordered[int(0.1 * (len(ordered) - 1))],
        "p90": ordered[math.ceil(0.9 * (len(ordered) - 1))],
        "samples": [round(sample, 4) for sample in samples],
    }


def scene_on_gpu(num: int, size: int) -> tuple[Scene, torch.Tensor, torch.Tensor]:
    scene = head_blob(num)
    fields = {
        name: getattr(scene, name).cuda() for name in ("means", "quats", "scales", "opacities", "colors")
    }
    viewmat, K = camera(size)
    return Scene(**fields), viewmat.cuda(), K.cuda()


def render_steps(scene: Scene, viewmat, K, size: int, backend: str) -> tuple[Callable, Callable]:
    """(forward without autograd, forward + backward) closures for one backend."""
    names = ("means", "quats", "scales", "opacities", "colors")
    leaves = {name: getattr(scene, name).clone().requires_grad_() for name in names}

    def forward():
        with torch.no_grad():
            return rasterize(
                **{n: getattr(scene, n) for n in names},
                viewmat=viewmat,
                K=K,
                width=size,
                height=size,
                backend=backend,
            )

    def forward_backward():
        for leaf in leaves.values():
            leaf.grad = None
        out = rasterize(**leaves, viewmat=viewmat, K=K, width=size, height=size, backend=backend)
        (out.rgb.sum() + out.alpha.sum() + 0.1 * out.depth.sum()).backward()

    return forward, forward_backward


def unavailable(backend: str, scene: Scene, viewmat, K) -> str | None:
    args = (scene.means, scene.quats, scene.scales, scene.opacities, scene.colors, viewmat, K)
    if backend == "cuda":
        from cuda_ext.build import CudaExtensionUnavailable, load_extension
        from cuda_ext.rasterize import unsupported_reason

        reason = unsupported_reason(*args)
        if reason is None:
            try:
                load_extension()
            except CudaExtensionUnavailable as error:
                reason = str(error)
        return reason
    if backend == "gsplat":
        from cuda_ext.gsplat_backend import unsupported_reason

        return unsupported_reason(*args)
    return None


def driven_frame_steps(scene: Scene, viewmat, K, size: int, backend: str) -> tuple[Callable, Callable, str]:
    """(forward, forward + backward, hash-grid module name) of TalkingHead -> rasterize for one frame."""
    from avatar.model import CanonicalGaussians, DeformationConfig, FrameConditions, GaussianSet, TalkingHead

    canonical = CanonicalGaussians.from_activated(
        GaussianSet(
            means=scene.means,
            quats=torch.nn.functional.normalize(scene.quats, dim=-1),
            scales=scene.scales,
            opacities=scene.opacities,
            colors=scene.colors,
        )
    )
    config = DeformationConfig()
    head = TalkingHead(canonical, config, hash_grid_backend="auto", device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    conditions = FrameConditions(
        audio=torch.randn(1, config.window, 16, 80, device="cuda", generator=generator),
        eye=torch.ones(1, device="cuda"),
        view=torch.nn.functional.normalize(torch.randn(1, 3, device="cuda", generator=generator), dim=-1),
    )

    def frame():
        gaussians, _ = head(conditions)
        g = gaussians[0]
        return rasterize(
            g.means, g.quats, g.scales, g.opacities, g.colors, viewmat, K, size, size, backend=backend
        )

    def forward():
        with torch.no_grad():
            return frame()

    def forward_backward():
        head.zero_grad(set_to_none=True)
        out = frame()
        (out.rgb.sum() + out.alpha.sum()).backward()

    grid = type(head.deformation).__name__
    for module in head.modules():
        if "HashGrid" in type(module).__name__:
            grid = type(module).__name__
    return forward, forward_backward, grid


def git_commit() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def versions() -> dict:
    try:
        import gsplat

        gsplat_version = gsplat.__version__
    except Exception as error:  # any import failure: record it, do not stop the benchmark
        gsplat_version = f"unavailable ({type(error).__name__})"
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gsplat": gsplat_version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the rasterizer backends on a CUDA GPU.")
    parser.add_argument("--gaussians", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    parser.add_argument("--backends", nargs="+", default=["cuda", "gsplat", "torch"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time budget of one measurement")
    parser.add_argument("--no-frame", action="store_true", help="skip the whole driven frame")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print(
            "error: this benchmark needs a CUDA GPU and torch with CUDA "
            f"(torch {torch.__version__}, CUDA {torch.version.cuda}); "
            "scripts/bench_render_cpu.py times the CPU rasterizer",
            file=sys.stderr,
        )
        return 2

    timing = dict(warmup=args.warmup, repeats=args.repeats, max_seconds=args.max_seconds)
    results: list[dict] = []
    for num in args.gaussians:
        scene, viewmat, K = scene_on_gpu(num, args.size)
        for backend in args.backends:
            entry = {
                "part": "render",
                "backend": backend,
                "gaussians": num,
                "width": args.size,
                "height": args.size,
            }
            reason = unavailable(backend, scene, viewmat, K)
            if reason is not None:
                entry["skipped"] = reason
            else:
                forward, forward_backward = render_steps(scene, viewmat, K, args.size, backend)
                entry["forward_ms"] = time_cuda(forward, **timing)
                entry["forward_backward_ms"] = time_cuda(forward_backward, **timing)
                entry["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
            results.append(entry)
            report(entry)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    if not args.no_frame:
        num = args.gaussians[0]
        scene, viewmat, K = scene_on_gpu(num, args.size)
        for backend in args.backends:
            entry = {
                "part": "driven frame",
                "backend": backend,
                "gaussians": num,
                "width": args.size,
                "height": args.size,
            }
            reason = unavailable(backend, scene, viewmat, K)
            try:
                if reason is not None:
                    raise RuntimeError(reason)
                forward, forward_backward, grid = driven_frame_steps(scene, viewmat, K, args.size, backend)
                entry["hash_grid"] = grid
                entry["forward_ms"] = time_cuda(forward, **timing)
                entry["forward_backward_ms"] = time_cuda(forward_backward, **timing)
            except Exception as error:  # the model may not exist yet, or not build here: record why
                entry["skipped"] = f"{type(error).__name__}: {error}"
            results.append(entry)
            report(entry)

    device = torch.cuda.get_device_name()
    record = {
        "gpu": device,
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        **versions(),
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timing": timing,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    path = args.out / f"render-{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def report(entry: dict) -> None:
    label = f"{entry['part']:<13} {entry['backend']:<7} {entry['gaussians']:>7} x {entry['width']}x{entry['height']}"
    if "skipped" in entry:
        print(f"{label}  skipped: {entry['skipped']}", flush=True)
        return
    fwd, both = entry["forward_ms"], entry["forward_backward_ms"]
    print(
        f"{label}  forward {fwd['median']:8.3f} ms [{fwd['p10']:.3f}, {fwd['p90']:.3f}]"
        f"  forward+backward {both['median']:8.3f} ms [{both['p10']:.3f}, {both['p90']:.3f}]",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
