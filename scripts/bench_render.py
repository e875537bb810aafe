"""GPU benchmark of the rasterizer backends and of a whole audio-driven frame, timed with CUDA events.

    python scripts/bench_render.py [--gaussians 10000 50000 200000] [--size 512] [--backends cuda gsplat torch]
                                   [--frame-gaussians 50000] [--warmup 5] [--repeats 50] [--max-seconds 20]
                                   [--out bench/results]

For each backend and Gaussian count: forward (no autograd) and forward + backward (a loss on rgb, alpha and
depth, gradients w.r.t. every Gaussian parameter) of the head-like scene of scripts/bench_render_cpu.py at
size x size. Each measurement runs `--warmup` untimed iterations, then up to `--repeats` timed ones (fewer when
they exceed `--max-seconds`, at least 3), each between two CUDA events; it reports the median, 10th and 90th
percentile in milliseconds. Then, per backend, one whole driven frame of `--frame-gaussians` Gaussians
(`driven_frame_steps`: audio, eye and view tokens -> attention -> offsets -> rasterize -> composite), forward
and forward + backward; the torch backend drives it with the PyTorch hash grid, the others with the fastest
grid available ("auto").

Writes bench/results/render-<gpu>-<time>.json with the GPU name, torch, CUDA and gsplat versions, the git
commit, the command line, every measurement and each backend's time over the cuda backend's; a backend that
cannot run here is recorded with the reason. Refuses to run without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_record import REPO, record_header, write_record
from bench_render_cpu import Scene, camera, head_blob

from avatar.core.backends import cuda_kernels_unavailable_reason, gsplat_unavailable_reason
from avatar.model import CanonicalGaussians, DeformationConfig, FrameConditions, GaussianSet, TalkingHead
from avatar.render import rasterize
from cuda_ext.rasterize import inputs_unsupported_reason


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


def scene_on(device: torch.device | str, num: int, size: int) -> tuple[Scene, torch.Tensor, torch.Tensor]:
    """The head-like blob of `num` Gaussians and a camera that frames it at size x size, on `device`."""
    scene = head_blob(num)
    fields = {
        name: getattr(scene, name).to(device) for name in ("means", "quats", "scales", "opacities", "colors")
    }
    viewmat, K = camera(size)
    return Scene(**fields), viewmat.to(device), K.to(device)


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
        return inputs_unsupported_reason(*args) or cuda_kernels_unavailable_reason()
    if backend == "gsplat":
        return inputs_unsupported_reason(*args) or gsplat_unavailable_reason()
    return None


def driven_frame_steps(
    scene: Scene,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    size: int,
    backend: str,
    config: DeformationConfig | None = None,
    hash_grid_backend: str = "auto",
) -> tuple[Callable, Callable, TalkingHead]:
    """(forward, forward + backward, the model) of one whole driven frame on the scene's device.

    The frame: driving features, eye openness and view direction -> audio encoder, mouth motion and condition
    tokens -> spatial-audio attention over the Gaussians' hash-grid features -> per-Gaussian offsets and mouth
    skinning -> rasterization, the head composited in its last pass over the torso-over-background image of this frame
    (a captured frame's torso over a background plate, as `avatar.drive.compositor.torso_over_background`).
    config: the deformation field's sizes; default `DeformationConfig()`, that of the `default` fit preset.
    hash_grid_backend: as `avatar.model.encoding.select.make_hash_grid`'s.
    """
    device = scene.means.device
    config = config if config is not None else DeformationConfig()
    canonical = CanonicalGaussians.from_activated(
        GaussianSet(
            means=scene.means,
            quats=torch.nn.functional.normalize(scene.quats, dim=-1),
            scales=scene.scales,
            opacities=scene.opacities,
            colors=scene.colors,
        )
    )
    generator = torch.Generator(device=device).manual_seed(0)
    anchors = scene.means[torch.randperm(scene.means.shape[0], generator=generator, device=device)[:75]]
    head = TalkingHead(
        canonical, config, mouth_anchors=anchors, hash_grid_backend=hash_grid_backend, device=device
    )
    conditions = FrameConditions(
        audio=torch.randn(
            1, config.window, 16, config.n_mels + config.phone_classes, device=device, generator=generator
        ),
        eye=torch.ones(1, device=device),
        view=torch.nn.functional.normalize(torch.randn(1, 3, device=device, generator=generator), dim=-1),
    )
    captured = torch.rand(size, size, 3, device=device, generator=generator)
    plate = torch.rand(size, size, 3, device=device, generator=generator)
    rows = torch.linspace(0, 1, size, device=device)[:, None, None]
    torso_weight = (
        ((rows - 0.7) * 20).sigmoid().expand(size, size, 1)
    )  # the torso fills the bottom of the frame

    def frame() -> torch.Tensor:
        gaussians, _ = head(conditions)
        g = gaussians[0]
        base = captured * torso_weight + plate * (1 - torso_weight)
        out = rasterize(
            g.means, g.quats, g.scales, g.opacities, g.colors, viewmat, K, size, size,
            background=base, backend=backend,
        )  # fmt: skip
        return out.rgb

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return frame()

    def forward_backward() -> None:  # as a training step: the render's loss and the audio's mouth-motion loss
        head.zero_grad(set_to_none=True)
        field = head.deformation
        motion = field.mouth_motion(conditions.audio)
        (frame().sum() + motion.sum()).backward()

    return forward, forward_backward, head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the rasterizer backends on a CUDA GPU.")
    parser.add_argument("--gaussians", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    parser.add_argument("--backends", nargs="+", default=["cuda", "gsplat", "torch"])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time budget of one measurement")
    parser.add_argument("--frame-gaussians", type=int, default=50_000, help="Gaussians of the driven frame")
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
        scene, viewmat, K = scene_on("cuda", num, args.size)
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
        num = args.frame_gaussians
        scene, viewmat, K = scene_on("cuda", num, args.size)
        for backend in args.backends:
            entry = {
                "part": "driven frame",
                "backend": backend,
                "gaussians": num,
                "width": args.size,
                "height": args.size,
            }
            reason = unavailable(backend, scene, viewmat, K)
            if reason is not None:
                entry["skipped"] = reason
            else:
                forward, forward_backward, head = driven_frame_steps(
                    scene,
                    viewmat,
                    K,
                    args.size,
                    backend,
                    hash_grid_backend="torch" if backend == "torch" else "auto",
                )
                entry["hash_grid"] = type(head.deformation.hash_grid).__name__
                entry["forward_ms"] = time_cuda(forward, **timing)
                entry["forward_backward_ms"] = time_cuda(forward_backward, **timing)
                entry["frames_per_second"] = 1000 / entry["forward_ms"]["median"]
            results.append(entry)
            report(entry)

    record = {
        **record_header("render", torch.device("cuda"), __file__, argv),
        "timing": timing,
        "ratios": speed_ratios(results),
        "results": results,
    }
    print(f"wrote {write_record(args.out, 'render', record)}")
    return 0


def speed_ratios(results: list[dict], reference: str = "cuda") -> list[dict]:
    """For each part and Gaussian count: every other backend's median time over `reference`'s (>1: slower)."""
    timed = {(r["part"], r["gaussians"], r["backend"]): r for r in results if "skipped" not in r}
    ratios = []
    for (part, num, backend), entry in timed.items():
        base = timed.get((part, num, reference))
        if backend == reference or base is None:
            continue
        ratios.append(
            {
                "part": part,
                "gaussians": num,
                "backend": backend,
                "over": reference,
                **{
                    key: entry[key]["median"] / base[key]["median"]
                    for key in ("forward_ms", "forward_backward_ms")
                },
            }
        )
    return ratios


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
