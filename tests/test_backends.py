"""The one place that resolves `auto`: devices, rasterizers and hash grids, and the reasons it gives."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from avatar.core import backends
from avatar.core.backends import (
    BackendChoice,
    gsplat_unavailable_reason,
    resolve_device,
    resolve_hash_grid,
    resolve_rasterizer,
)
from avatar.core.errors import AvatarError


def _fake_gsplat(monkeypatch, compiled) -> None:
    """A gsplat whose `import gsplat` works, with `gsplat.cuda._backend._C` as given."""
    package = types.ModuleType("gsplat")
    cuda = types.ModuleType("gsplat.cuda")
    backend = types.ModuleType("gsplat.cuda._backend")
    backend._C = compiled
    monkeypatch.setitem(sys.modules, "gsplat", package)
    monkeypatch.setitem(sys.modules, "gsplat.cuda", cuda)
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", backend)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_gsplat_that_imports_without_its_compiled_backend_is_not_usable(monkeypatch):
    _fake_gsplat(monkeypatch, None)
    reason = gsplat_unavailable_reason()
    assert reason is not None and "compiled CUDA backend does not load" in reason
    _fake_gsplat(monkeypatch, types.SimpleNamespace())
    assert gsplat_unavailable_reason() is None


def test_auto_falls_back_to_torch_with_the_reason_when_gsplat_cannot_render(monkeypatch):
    _fake_gsplat(monkeypatch, None)
    monkeypatch.setattr(backends, "cuda_kernels_unavailable_reason", lambda: "no toolkit")
    assert resolve_rasterizer("auto", torch.device("cuda")) == BackendChoice("torch", "no toolkit")
    with pytest.raises(AvatarError, match="--backend gsplat: gsplat imports, but its compiled"):
        resolve_rasterizer("gsplat", torch.device("cuda"))
    _fake_gsplat(monkeypatch, types.SimpleNamespace())
    assert resolve_rasterizer("auto", torch.device("cuda")) == BackendChoice("gsplat", "no toolkit")
    monkeypatch.setattr(backends, "cuda_kernels_unavailable_reason", lambda: None)
    assert resolve_rasterizer("auto", torch.device("cuda")) == BackendChoice("cuda")


def test_gsplat_missing_altogether_is_a_reason_too(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "gsplat", None)  # import gsplat raises ImportError
    monkeypatch.delitem(sys.modules, "gsplat.cuda", raising=False)
    monkeypatch.delitem(sys.modules, "gsplat.cuda._backend", raising=False)
    assert "does not import" in gsplat_unavailable_reason()


def test_hash_grid_auto_order_and_refusals(monkeypatch):
    assert resolve_hash_grid("auto", "cpu") == BackendChoice("torch", "the parameters are on the cpu")
    assert resolve_hash_grid("torch", "cuda") == BackendChoice("torch")
    monkeypatch.setattr(backends, "tcnn_unavailable_reason", lambda: "no tinycudann")
    monkeypatch.setattr(backends, "cuda_kernels_unavailable_reason", lambda: None)
    assert resolve_hash_grid("auto", "cuda") == BackendChoice("cuda", "no tinycudann")
    monkeypatch.setattr(backends, "cuda_kernels_unavailable_reason", lambda: "no toolkit")
    assert resolve_hash_grid("auto", None).name == "torch"
    with pytest.raises(AvatarError, match="--hash-grid cuda: no toolkit"):
        resolve_hash_grid("cuda", "cuda")
    with pytest.raises(AvatarError, match="unknown hash-grid backend"):
        resolve_hash_grid("fast", "cuda")
    with pytest.raises(AvatarError, match="unknown rasterizer backend"):
        resolve_rasterizer("fast", torch.device("cpu"))


def test_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(AvatarError, match="no CUDA GPU"):
        resolve_device("cuda")
