"""Without a CUDA GPU (this CPU torch), the CUDA backends say why they cannot run and "auto" uses torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avatar.core.backends import BackendChoice, resolve_rasterizer
from avatar.core.errors import AvatarError
from avatar.model.encoding.hash_grid import HashGridConfig, HashGridEncoding
from avatar.model.encoding.select import make_hash_grid
from avatar.render import rasterize
from cuda_ext import build
from cuda_ext.errors import CudaExtError
from tests.test_rasterize_torch import random_scene

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def test_extension_is_unavailable_with_a_reason():
    reason = build.unavailable_reason()
    assert reason is not None and "CUDA" in reason
    with pytest.raises(build.CudaExtensionUnavailable, match="cannot be built") as raised:
        build.load_extension()
    assert isinstance(raised.value, CudaExtError) and "backend='torch'" in str(raised.value)
    assert build.try_load_extension() is None


def test_build_command_exits_with_the_reason():
    result = subprocess.run(
        [sys.executable, "-m", "cuda_ext.build"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "CUDA" in result.stderr


def test_build_key_follows_sources_and_architecture(tmp_path, monkeypatch):
    for path in build.source_files():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path)
    key = build.build_key("90", "nvcc 13.0")
    assert build.build_key("90", "nvcc 13.0") == key
    assert build.build_key("80", "nvcc 13.0") != key and build.build_key("90", "nvcc 12.8") != key
    header = tmp_path / "rasterize.cuh"
    header.write_text(header.read_text() + "\n// edited\n")
    assert build.build_key("90", "nvcc 13.0") != key
    assert [path.name for path in build.compiled_sources()][-1] == "bindings.cpp"


def test_gpus_older_than_the_kernels_need_are_refused(monkeypatch):
    monkeypatch.setattr(build.torch.version, "cuda", "13.0")
    monkeypatch.setattr(build.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(build.torch.cuda, "get_device_capability", lambda device=None: (5, 2))
    assert build.unavailable_reason() == "the GPU has compute capability 5.2; the kernels need 6.0"


def test_build_carries_ptx_for_newer_gpus():
    flags = build.cuda_flags("90")
    assert (
        "-gencode=arch=compute_90,code=sm_90" in flags and "-gencode=arch=compute_90,code=compute_90" in flags
    )


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AVATAR_CUDA_CACHE", str(tmp_path / "mine"))
    assert build.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("AVATAR_CUDA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_root() == tmp_path / "xdg" / "splat-avatar" / "cuda_ext"


def render(scene, backend):
    keys = ("means", "quats", "scales", "opacities", "colors", "viewmat", "K", "width", "height")
    return rasterize(*(scene[k] for k in keys), backend=backend)


@pytest.mark.parametrize("backend", ["cuda", "gsplat"])
def test_gpu_rasterizer_backends_explain_what_is_missing(backend):
    scene = random_scene(20, 16, 16, seed=0, dtype=torch.float32)
    with pytest.raises(AvatarError, match=f"the {backend} rasterizer cannot render this.*backend='torch'"):
        render(scene, backend)


def test_auto_rasterizer_renders_with_torch():
    scene = random_scene(30, 20, 18, seed=1)
    auto, reference = render(scene, "auto"), render(scene, "torch")
    assert torch.equal(auto.rgb, reference.rgb) and torch.equal(auto.radii, reference.radii)


def test_auto_rasterizer_for_a_device_says_why_our_kernels_are_not_used():
    assert resolve_rasterizer("auto", torch.device("cpu")) == BackendChoice(
        "torch", "the inputs are on the cpu"
    )
    choice = resolve_rasterizer("auto", torch.device("cuda"))
    assert choice.name in ("gsplat", "torch") and "cannot be built" in choice.note and "CUDA" in choice.note


def test_cuda_hash_grid_explains_what_is_missing():
    config = HashGridConfig(n_levels=2, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4)
    with pytest.raises(AvatarError, match="CUDA"):
        make_hash_grid(config, "cuda")
    with pytest.raises(AvatarError, match="runs on a CUDA GPU"):
        make_hash_grid(config, "cuda", device="cpu")
    assert type(make_hash_grid(config, "auto")) is HashGridEncoding
