"""Time the pure-PyTorch rasterizer on a head-sized blob of Gaussians filling the view.

    python scripts/bench_render_cpu.py [--gaussians 20000] [--repeats 5]

Prints forward + backward at 128x128 and forward (no grad) at 256x256, the budgets being 0.5 s each on
two CPU cores. The scene: a head-like ellipsoid (15 x 20 x 17 cm) 50 cm from the camera, 85 % of the
Gaussians as flat splats on its surface sized to the surface spacing, 15 % larger ones inside it, with
opacities spread like a trained model's (sigmoid of N(1, 2)).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from avatar.render import focal_from_fov, intrinsics, look_at, rasterize


@dataclass
class Scene:
    means: torch.Tensor  # [N, 3]
    quats: torch.Tensor  # [N, 4]
    scales: torch.Tensor  # [N, 3]
    opacities: torch.Tensor  # [N]
    colors: torch.Tensor  # [N, 3]


def head_blob(num_gaussians: int, seed: int = 0) -> Scene:
    """A head-like ellipsoid of Gaussians centred at the origin (metres)."""
    gen = torch.Generator().manual_seed(seed)
    semi_axes = torch.tensor([0.075, 0.10, 0.085])
    num_surface = int(0.85 * num_gaussians)
    num_inside = num_gaussians - num_surface

    directions = torch.randn(num_surface, 3, generator=gen)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    surface = directions * semi_axes
    normals = directions / semi_axes
    normals = normals / normals.norm(dim=-1, keepdim=True)
    area = 4 * math.pi * (semi_axes.prod() ** (2 / 3))
    spacing = float(torch.sqrt(area / num_surface))
    surface_scales = spacing * 0.7 * torch.exp(0.4 * torch.randn(num_surface, 1, generator=gen))
    surface_scales = surface_scales * torch.tensor([1.0, 1.0, 0.15])
    # Rotate the local z axis (the thin one) onto the surface normal.
    z_axis = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    half = z_axis + normals
    half = half / half.norm(dim=-1, keepdim=True)
    surface_quats = torch.cat(
        [(z_axis * half).sum(-1, keepdim=True), torch.linalg.cross(z_axis, half)], dim=-1
    )

    inside = torch.rand(num_inside, 3, generator=gen) * 2 - 1
    inside = inside / inside.norm(dim=-1, keepdim=True).clamp(min=1) * semi_axes * 0.9
    inside_scales = spacing * 2.0 * torch.exp(0.5 * torch.randn(num_inside, 3, generator=gen))
    inside_quats = torch.randn(num_inside, 4, generator=gen)

    return Scene(
        means=torch.cat([surface, inside]),
        quats=torch.cat([surface_quats, inside_quats]),
        scales=torch.cat([surface_scales, inside_scales]),
        opacities=torch.sigmoid(1.0 + 2.0 * torch.randn(num_gaussians, generator=gen)),
        colors=torch.rand(num_gaussians, 3, generator=gen) * 0.5 + torch.tensor([0.4, 0.25, 0.2]),
    )


def camera(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera 50 cm in front of the head (on -z), with the head filling about 85 % of the image height."""
    fov = math.degrees(2 * math.atan(0.10 / 0.85 / 0.5))
    viewmat = look_at(torch.tensor([0.0, 0.0, -0.5]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    focal = focal_from_fov(fov, size)
    return viewmat, intrinsics(focal, size / 2, size / 2)


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    scene = head_blob(args.gaussians)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.gaussians} Gaussians")

    viewmat, K = camera(128)
    params = [t.clone().requires_grad_(True) for t in (scene.means, scene.quats, scene.scales)]
    opacities = scene.opacities.clone().requires_grad_(True)
    colors = scene.colors.clone().requires_grad_(True)
    background = torch.ones(3)

    def forward_backward() -> None:
        out = rasterize(*params, opacities, colors, viewmat, K, 128, 128, background=background)
        out.means2d.retain_grad()
        (out.rgb.sum() + out.depth.sum()).backward()

    seconds = time_call(forward_backward, args.repeats)
    print(f"128x128 forward+backward: {seconds:.3f} s (budget 0.5 s)")

    viewmat, K = camera(256)

    @torch.no_grad()
    def forward() -> None:
        rasterize(scene.means, scene.quats, scene.scales, scene.opacities, scene.colors, viewmat, K, 256, 256)

    seconds = time_call(forward, args.repeats)
    print(f"256x256 forward:          {seconds:.3f} s (budget 0.5 s)")


if __name__ == "__main__":
    main()
