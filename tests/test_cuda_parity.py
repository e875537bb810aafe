"""GPU parity of cuda_ext's kernels with the PyTorch reference, and with gsplat where it is installed.

Fresh random float32 inputs (tests.test_rasterize_torch.random_scene: Gaussians spilling past the image edges,
sizes from 0.3 to 8 pixels) for 1k, 10k and 100k Gaussians at 64x64, 256x256, 512x512 and 333x257, compared
stage by stage so a failure points at one kernel: projection, tile lists, compositing, the whole backend, then
the hash grid. The reference runs in float64 from the same float32 inputs; forward values agree to float32
rounding except at a few pixels where a rounding flips a discrete decision (a pixel's termination, an alpha
at 1/255, a radius rounded up), gradients to gsplat's test tolerances (rtol 1e-3) for all but a few Gaussians.
Skipped without CUDA (conftest); skipped without a CUDA toolkit to build the kernels; a failing build fails.
"""

from __future__ import annotations

import pytest
import torch

from avatar.core.backends import BackendChoice, resolve_rasterizer
from avatar.model.encoding.hash_grid import HashGridConfig, HashGridEncoding, hash_grid_encode
from avatar.model.encoding.select import make_hash_grid
from avatar.render import (
    ALPHA_MIN,
    alpha_half_extents,
    bin_gaussians,
    project_gaussians,
    rasterize,
    rasterize_to_pixels_torch,
)
from tests.cuda_checks import (
    assert_images_close,
    assert_rows_close,
    float32_scene,
    moved_camera,
    relative_error,
    upper_triangle,
)

pytestmark = pytest.mark.gpu

DEVICE = "cuda"
SIZES = [(64, 64), (256, 256), (512, 512), (333, 257)]
COUNTS = [1_000, 10_000, 100_000]
GRID = [(num, width, height) for num in COUNTS for width, height in SIZES]
STAGE_GRID = [(1_000, 333, 257), (10_000, 256, 256), (100_000, 512, 512), (100_000, 64, 64)]


@pytest.fixture(scope="module")
def ext():
    from cuda_ext.build import load_extension, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"the CUDA kernels cannot be built here: {reason}")
    return load_extension()  # a build that fails fails the tests


def gpu_scene(num, width, height, seed, channels=3):
    scene = float32_scene(num, width, height, seed, channels=channels, device=DEVICE)
    if seed % 2:
        scene["viewmat"] = moved_camera(DEVICE)
    return scene


def projected(scene):
    keys = ("means", "quats", "scales", "viewmat", "K", "width", "height")
    return project_gaussians(*(scene[k] for k in keys))


def torch_bins(projection, opacities, width, height):
    return bin_gaussians(
        projection.means2d,
        projection.radii * (opacities >= ALPHA_MIN),
        projection.depths,
        width,
        height,
        half_extents=alpha_half_extents(projection.cov2d, opacities, ALPHA_MIN),
    )


def seed_of(num, width, height):
    return (num + 7 * width + 13 * height) % 1000


# ---- projection ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num, width, height", STAGE_GRID)
def test_projection_matches_torch(ext, num, width, height):
    from cuda_ext.rasterize import project_gaussians_cuda

    seed = seed_of(num, width, height)
    scene = gpu_scene(num, width, height, seed)
    keys = ("means", "quats", "scales", "viewmat")
    leaves = {k: scene[k].clone().requires_grad_() for k in keys}
    means2d, conics, depths, radii, cov2d = project_gaussians_cuda(
        **leaves, K=scene["K"], width=width, height=height
    )
    leaves64 = {k: scene[k].double().requires_grad_() for k in keys}
    reference = project_gaussians(**leaves64, K=scene["K"].double(), width=width, height=height)
    reference32 = projected(scene)

    assert int((radii != reference32.radii).sum()) <= max(2, num // 5000)
    both = (radii > 0) & (reference.radii > 0) & (radii == reference.radii)
    assert int(both.sum()) > num // 2
    torch.testing.assert_close(depths.double(), reference.depths.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(means2d[both].double(), reference.means2d[both].detach(), rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(
        cov2d[both].double(), upper_triangle(reference.cov2d)[both].detach(), rtol=1e-4, atol=1e-5
    )
    error = (conics[both].double() - reference.conics[both].detach()).abs().max()
    torch_error = (reference32.conics[both].double() - reference.conics[both].detach()).abs().max()
    assert error <= 4 * torch_error + 1e-6, "conics: further from float64 than torch's float32 result"

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    cotangents = [torch.randn(num, k, generator=gen, device=DEVICE) for k in (2, 3, 1)]
    cotangents[2] = cotangents[2][:, 0]
    mask = both.float()  # where a radius differs, the two projections cull differently
    outputs, outputs64 = (means2d, conics, depths), (reference.means2d, reference.conics, reference.depths)
    loss = sum((o * c * (mask if o.dim() == 1 else mask[:, None])).sum() for o, c in zip(outputs, cotangents))
    loss64 = sum(
        (o * c.double() * (mask if o.dim() == 1 else mask[:, None]).double()).sum()
        for o, c in zip(outputs64, cotangents)
    )
    grads = torch.autograd.grad(loss, list(leaves.values()))
    grads64 = torch.autograd.grad(loss64, list(leaves64.values()))
    for name, got, want in zip(keys, grads, grads64):
        if name == "viewmat":
            assert relative_error(got, want) < 2e-3, name
        else:
            assert_rows_close(name, got, want, rtol=1e-3, max_bad_fraction=0.005, atol_scale=1e-4)


# ---- tile intersection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num, width, height", GRID)
def test_tile_lists_match_torch(ext, num, width, height):
    from cuda_ext.rasterize import intersect_tiles_cuda

    scene = gpu_scene(num, width, height, seed_of(num, width, height))
    scene["opacities"][::9] = 0.5 * ALPHA_MIN
    projection = projected(scene)
    bins = intersect_tiles_cuda(
        projection.means2d,
        projection.radii,
        projection.depths,
        upper_triangle(projection.cov2d),
        scene["opacities"],
        width,
        height,
    )
    reference = torch_bins(projection, scene["opacities"], width, height)
    pairs = bins.tile_ids * num + bins.gaussian_ids.long()
    reference_pairs = reference.tile_ids * num + reference.gaussian_ids
    if torch.equal(pairs, reference_pairs):
        assert torch.equal(bins.offsets.long(), reference.offsets)
        return
    # An extent within an ulp of a tile edge may add or drop a tile; nothing else may differ.
    differing = int((~torch.isin(pairs, reference_pairs)).sum() + (~torch.isin(reference_pairs, pairs)).sum())
    assert differing <= max(2, len(reference_pairs) // 100_000), f"{differing} (tile, Gaussian) pairs differ"


# ---- compositing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num, width, height", STAGE_GRID)
@pytest.mark.parametrize("with_background", [False, True])
def test_compositing_matches_torch(ext, num, width, height, with_background):
    from cuda_ext.rasterize import intersect_tiles_cuda, rasterize_to_pixels_cuda

    seed = seed_of(num, width, height)
    scene = gpu_scene(num, width, height, seed)
    projection = projected(scene)
    opacities = scene["opacities"]
    bins = intersect_tiles_cuda(
        projection.means2d,
        projection.radii,
        projection.depths,
        upper_triangle(projection.cov2d),
        opacities,
        width,
        height,
    )
    reference_bins = torch_bins(projection, opacities, width, height)
    features = torch.cat([scene["colors"], projection.depths[:, None]], dim=1)
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    background = torch.rand(4, generator=gen, device=DEVICE) if with_background else None

    inputs = [
        t.detach().clone().requires_grad_()
        for t in (projection.means2d, projection.conics, opacities, features)
    ]
    extra = [] if background is None else [background.clone().requires_grad_()]
    image, alpha = rasterize_to_pixels_cuda(
        *inputs, bins, width, height, background=extra[0] if extra else None
    )
    inputs64 = [t.detach().double().requires_grad_() for t in inputs + extra]
    image64, alpha64 = rasterize_to_pixels_torch(*inputs64[:4], reference_bins, width, height)
    if background is not None:
        image64 = image64 + (1 - alpha64) * inputs64[4]

    assert_images_close("features", image, image64, atol=1e-4, max_bad_fraction=1e-3)
    assert_images_close("alpha", alpha, alpha64, atol=1e-5, max_bad_fraction=1e-3)

    v_image = torch.randn(image.shape, generator=gen, device=DEVICE)
    v_alpha = torch.randn(alpha.shape, generator=gen, device=DEVICE)
    grads = torch.autograd.grad((image * v_image).sum() + (alpha * v_alpha).sum(), inputs + extra)
    loss64 = (image64 * v_image.double()).sum() + (alpha64 * v_alpha.double()).sum()
    grads64 = torch.autograd.grad(loss64, inputs64)
    for name, got, want in zip(("means2d", "conics", "opacities", "features", "background"), grads, grads64):
        if name == "background":  # sums of v * T_final: T_final of dense pixels carries float32's error
            assert relative_error(got, want) < 2e-3, name
        else:
            assert_rows_close(name, got, want, rtol=1e-3, max_bad_fraction=0.01)


# ---- the whole backend ---------------------------------------------------------------------------------------


def render_with_gradients(scene, backend, dtype, background, weights):
    """rasterize() on fresh leaves in `dtype`; (output with means2d.grad, gradients of a random loss)."""
    names = ["means", "quats", "scales", "opacities", "colors", "viewmat"]
    leaves = {k: scene[k].detach().to(dtype, copy=True).requires_grad_() for k in names}
    if background is not None:
        leaves["background"] = background.detach().to(dtype, copy=True).requires_grad_()
    out = rasterize(
        **leaves, K=scene["K"].to(dtype), width=scene["width"], height=scene["height"], backend=backend
    )
    out.means2d.retain_grad()
    loss = sum((image.double() * w).sum() for image, w in zip((out.rgb, out.alpha, out.depth), weights))
    loss.backward()
    return out, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("num, width, height", GRID)
def test_cuda_backend_matches_torch_backend(ext, num, width, height):
    seed = seed_of(num, width, height)
    scene = gpu_scene(num, width, height, seed)
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    background = torch.rand(3, generator=gen, device=DEVICE) if seed % 3 else None
    weights = [
        torch.randn(height, width, k, generator=gen, device=DEVICE, dtype=torch.float64) for k in (3, 1, 1)
    ]
    out, grads = render_with_gradients(scene, "cuda", torch.float32, background, weights)
    reference, reference_grads = render_with_gradients(scene, "torch", torch.float64, background, weights)

    assert out.rgb.shape == (height, width, 3) and out.rgb.dtype == torch.float32
    assert int((out.radii != reference.radii).sum()) <= max(2, num // 5000)
    for name in ("rgb", "alpha", "depth"):
        assert_images_close(
            name, getattr(out, name), getattr(reference, name), atol=1e-4, max_bad_fraction=1e-3
        )
    assert_rows_close("means2d", out.means2d.grad, reference.means2d.grad, rtol=1e-3, max_bad_fraction=0.01)
    for name, want in reference_grads.items():
        if name in ("viewmat", "background"):
            assert relative_error(grads[name], want) < 5e-3, name
        else:
            assert_rows_close(name, grads[name], want, rtol=2e-3, max_bad_fraction=0.01, atol_scale=1e-3)


@pytest.mark.parametrize("channels", [1, 6, 16, 63])
def test_cuda_backend_handles_any_channel_count(ext, channels):
    scene = gpu_scene(2_000, 96, 80, seed=channels, channels=channels)
    gen = torch.Generator(device=DEVICE).manual_seed(channels)
    background = torch.rand(80, 96, channels, generator=gen, device=DEVICE)  # per-pixel background
    weights = [
        torch.randn(80, 96, k, generator=gen, device=DEVICE, dtype=torch.float64) for k in (channels, 1, 1)
    ]
    out, grads = render_with_gradients(scene, "cuda", torch.float32, background, weights)
    reference, reference_grads = render_with_gradients(scene, "torch", torch.float64, background, weights)
    assert out.rgb.shape == (80, 96, channels)
    assert_images_close("rgb", out.rgb, reference.rgb, atol=1e-4, max_bad_fraction=1e-3)
    assert_rows_close("colors", grads["colors"], reference_grads["colors"], rtol=1e-3, max_bad_fraction=0.01)
    assert relative_error(grads["background"], reference_grads["background"]) < 2e-3


def test_cuda_backend_renders_empty_and_invisible_scenes(ext):
    scene = gpu_scene(50, 40, 30, seed=3)
    background = torch.tensor([0.2, 0.4, 0.6], device=DEVICE)
    behind = {**scene, "means": scene["means"] * torch.tensor([1.0, 1.0, -1.0], device=DEVICE)}
    empty = {
        k: v[:0] if torch.is_tensor(v) and v.dim() and k not in ("viewmat", "K") else v
        for k, v in scene.items()
    }
    for case in (behind, empty):
        keys = ("means", "quats", "scales", "opacities", "colors", "viewmat", "K", "width", "height")
        out = rasterize(*(case[k] for k in keys), background=background, backend="cuda")
        assert torch.equal(out.rgb, background.expand(30, 40, 3)) and (out.alpha == 0).all()
        assert (out.radii == 0).all()


def test_auto_backend_picks_cuda(ext):
    scene = gpu_scene(3_000, 128, 96, seed=5)
    keys = ("means", "quats", "scales", "opacities", "colors", "viewmat", "K", "width", "height")
    auto = rasterize(*(scene[k] for k in keys), backend="auto")
    cuda = rasterize(*(scene[k] for k in keys), backend="cuda")
    assert torch.equal(auto.rgb, cuda.rgb)
    cpu = rasterize(
        *(scene[k].cpu() if torch.is_tensor(scene[k]) else scene[k] for k in keys), backend="auto"
    )
    assert cpu.rgb.device.type == "cpu"
    assert resolve_rasterizer("auto", torch.device("cuda")) == BackendChoice("cuda", None)


# ---- gsplat --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num, width, height", [(10_000, 256, 256), (100_000, 512, 512), (1_000, 333, 257)])
def test_cuda_backend_matches_gsplat_below_the_alpha_caps(ext, num, width, height):
    """With opacities < 0.35 neither alpha cap (0.99 here, 0.999 in gsplat) nor the 3-sigma square is ever
    reached, so the two differ only by rounding (gsplat's fast-math exp) and where a rounding flips a decision."""
    pytest.importorskip("gsplat")
    seed = seed_of(num, width, height)
    scene = gpu_scene(num, width, height, seed)
    scene["opacities"] = 0.02 + 0.33 * scene["opacities"]
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    background = torch.rand(3, generator=gen, device=DEVICE)
    weights = [
        torch.randn(height, width, k, generator=gen, device=DEVICE, dtype=torch.float64) for k in (3, 1, 1)
    ]
    out, grads = render_with_gradients(scene, "cuda", torch.float32, background, weights)
    theirs, their_grads = render_with_gradients(scene, "gsplat", torch.float32, background, weights)
    for name in ("rgb", "alpha", "depth"):
        assert_images_close(name, getattr(out, name), getattr(theirs, name), atol=5e-4, max_bad_fraction=2e-3)
    assert_rows_close("means2d", out.means2d.grad, theirs.means2d.grad, rtol=1e-2, max_bad_fraction=0.02)
    for name in ("means", "scales", "opacities", "colors"):
        assert_rows_close(
            name, grads[name], their_grads[name], rtol=1e-2, max_bad_fraction=0.02, atol_scale=1e-3
        )


def test_cuda_backend_is_close_to_gsplat_at_full_opacity(ext):
    """Opaque Gaussians: gsplat's 0.999 alpha cap and wider boxes change some pixels, not the picture."""
    pytest.importorskip("gsplat")
    scene = gpu_scene(50_000, 512, 512, seed=11)
    keys = ("means", "quats", "scales", "opacities", "colors", "viewmat", "K", "width", "height")
    ours = rasterize(*(scene[k] for k in keys), backend="cuda")
    theirs = rasterize(*(scene[k] for k in keys), backend="gsplat")
    difference = (ours.rgb - theirs.rgb).abs()
    assert float(difference.mean()) < 2e-3 and float((difference > 0.05).float().mean()) < 0.01


# ---- hash grid -----------------------------------------------------------------------------------------------

HASH_CONFIGS = {
    "default": HashGridConfig(),
    "f1": HashGridConfig(n_levels=8, n_features_per_level=1, log2_hashmap_size=14, base_resolution=8),
    "f4": HashGridConfig(n_levels=6, n_features_per_level=4, log2_hashmap_size=16, per_level_scale=1.7),
    "f8_dense": HashGridConfig(n_levels=3, n_features_per_level=8, log2_hashmap_size=20, base_resolution=4),
    "smoothstep": HashGridConfig(n_levels=10, interpolation="Smoothstep"),
    "nearest": HashGridConfig(n_levels=10, interpolation="Nearest"),
}


@pytest.mark.parametrize("name", list(HASH_CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hash_grid_matches_torch(ext, name, dtype):
    from avatar.model.encoding.hash_grid_cuda import hash_grid_encode_cuda

    config = HASH_CONFIGS[name]
    gen = torch.Generator(device=DEVICE).manual_seed(len(name))
    params = (torch.rand(config.n_params, generator=gen, device=DEVICE, dtype=torch.float64) * 2 - 1).to(
        dtype
    )
    positions = (torch.rand(100_000, 3, generator=gen, device=DEVICE, dtype=torch.float64) * 1.1 - 0.05).to(
        dtype
    )
    grad_out = torch.randn(100_000, config.n_output_dims, generator=gen, device=DEVICE, dtype=dtype)

    def run(encode):
        leaves = [positions.clone().requires_grad_(), params.clone().requires_grad_()]
        features = encode(leaves[0], leaves[1], config)
        return (features.detach(), *torch.autograd.grad(features, leaves, grad_out))

    ours, reference = run(hash_grid_encode_cuda), run(hash_grid_encode)
    exact = dtype == torch.float64
    tolerances = [
        dict(atol=1e-12, rtol=1e-12) if exact else dict(atol=2e-6, rtol=1e-5),  # features
        dict(atol=1e-8, rtol=1e-9) if exact else dict(atol=1e-2, rtol=1e-3),  # positions (x scale 4096)
        dict(atol=1e-11, rtol=1e-11) if exact else dict(atol=1e-4, rtol=1e-4),  # params (atomic sums)
    ]
    for what, got, want, tolerance in zip(("features", "positions", "params"), ours, reference, tolerances):
        assert got.dtype == dtype, what
        torch.testing.assert_close(got, want, **tolerance, msg=what)


def test_cuda_hash_grid_module_shares_the_torch_state_dict(ext):
    config = HashGridConfig(n_levels=8, log2_hashmap_size=15)
    module = make_hash_grid(config, "cuda", device=DEVICE)
    reference = HashGridEncoding(config, seed=3).to(DEVICE)
    module.load_state_dict(reference.state_dict())
    positions = torch.rand(5_000, 3, device=DEVICE)
    torch.testing.assert_close(module(positions), reference(positions), atol=2e-6, rtol=1e-5)
    assert type(make_hash_grid(config, "auto", device=DEVICE)).__name__ in (
        "CudaHashGridEncoding",
        "TcnnHashGridEncoding",
    )
