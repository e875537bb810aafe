"""The one place that turns "auto" into a device, a rasterizer and a hash grid, and says why.

`auto` takes the fastest implementation that runs here: for the rasterizer this project's CUDA kernels, else
gsplat's, else the PyTorch reference; for the hash grid tiny-cuda-nn, else our kernels, else PyTorch. A
name asked for explicitly that cannot run here is refused before any work, with the reason and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from avatar.core.errors import AvatarError
from cuda_ext import rasterize as cuda_rasterize
from cuda_ext.build import load_extension
from cuda_ext.errors import CudaExtError

DeviceName = Literal["auto", "cpu", "cuda"]
RasterizerName = Literal["auto", "torch", "cuda", "gsplat"]
HashGridName = Literal["auto", "torch", "cuda", "tcnn"]
RASTERIZERS: tuple[str, ...] = get_args(RasterizerName)
HASH_GRIDS: tuple[str, ...] = get_args(HashGridName)

_GSPLAT_FIX = "Install gsplat on a machine with CUDA (pip install gsplat), or use the torch backend"
_TCNN_FIX = (
    "Install tiny-cuda-nn's PyTorch bindings on a CUDA machine "
    "(pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch), "
    "or use the torch or cuda hash grid"
)


@dataclass(frozen=True)
class BackendChoice:
    name: str  # the implementation that runs: never "auto"
    note: str | None = None  # why a faster one does not, when it does not


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AvatarError("--device cuda was asked for, but torch sees no CUDA GPU", fix="Use --device cpu")
    return torch.device(name)


def cuda_kernels_unavailable_reason() -> str | None:
    """Why this project's kernels cannot run here (building them on first use), or None."""
    try:
        load_extension()
    except CudaExtError as error:
        return str(error)
    return None


def gsplat_unavailable_reason() -> str | None:
    """Why gsplat cannot render here, or None. `import gsplat` succeeds without its compiled CUDA backend
    (the first call then fails), so the backend module itself is loaded and checked."""
    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        from gsplat.cuda._backend import _C
    except (ImportError, OSError, RuntimeError) as error:
        return f"gsplat does not import ({type(error).__name__}: {error})"
    if _C is None:
        return (
            "gsplat imports, but its compiled CUDA backend does not load (no build for this torch and CUDA)"
        )
    return None


def tcnn_unavailable_reason() -> str | None:
    """Why the tiny-cuda-nn hash grid cannot run here, or None."""
    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError, RuntimeError) as error:
        return f"tinycudann does not import ({type(error).__name__}: {error})"
    return None


def _unknown(kind: str, name: str, names: tuple[str, ...]) -> AvatarError:
    return AvatarError(f"unknown {kind} backend {name!r}", fix=f"Use one of: {', '.join(names)}")


def resolve_rasterizer(requested: str, device: torch.device) -> BackendChoice:
    """The rasterizer that `requested` means for float32 inputs on `device`; AvatarError when a named one
    cannot run there."""
    if requested not in RASTERIZERS:
        raise _unknown("rasterizer", requested, RASTERIZERS)
    if requested == "torch":
        return BackendChoice("torch")
    if device.type != "cuda":
        if requested == "auto":
            return BackendChoice("torch", f"the inputs are on the {device.type}")
        raise AvatarError(
            f"--backend {requested} runs on a CUDA GPU, but this runs on the {device.type}",
            fix="Pass --backend auto (or torch), or --device cuda on a machine with a GPU",
        )
    if requested == "cuda":
        if (reason := cuda_kernels_unavailable_reason()) is not None:
            raise AvatarError(f"--backend cuda: {reason}", fix="Pass --backend auto")
        return BackendChoice("cuda")
    if requested == "gsplat":
        if (reason := gsplat_unavailable_reason()) is not None:
            raise AvatarError(f"--backend gsplat: {reason}", fix=_GSPLAT_FIX)
        return BackendChoice("gsplat")
    if (kernels := cuda_kernels_unavailable_reason()) is None:
        return BackendChoice("cuda")
    return BackendChoice("gsplat" if gsplat_unavailable_reason() is None else "torch", kernels)


def rasterizer_for_inputs(tensors: tuple[Tensor | None, ...], num_channels: int) -> str:
    """What rasterize(..., backend="auto") runs for these inputs (cuda_ext.rasterize.inputs_unsupported_reason's
    tensors, C colour channels): "cuda" when our kernels can render them (building them on first use), else
    "gsplat" when gsplat can, else "torch" (CPU tensors, float64, a gradient w.r.t. K, no GPU, ...)."""
    if cuda_rasterize.inputs_unsupported_reason(*tensors) is not None:
        return "torch"
    if cuda_kernels_unavailable_reason() is None:
        try:
            cuda_rasterize.feature_padding(num_channels + 1)  # raises past the kernels' feature count
            return "cuda"
        except CudaExtError:
            pass
    return "gsplat" if gsplat_unavailable_reason() is None else "torch"


def resolve_hash_grid(requested: str, device: torch.device | str | None) -> BackendChoice:
    """The hash grid that `requested` means on `device` (None: wherever CUDA is); AvatarError when a named
    one cannot run there."""
    if requested not in HASH_GRIDS:
        raise _unknown("hash-grid", requested, HASH_GRIDS)
    if requested == "torch":
        return BackendChoice("torch")
    on_cpu = device is not None and torch.device(device).type == "cpu"
    if on_cpu:
        if requested == "auto":
            return BackendChoice("torch", "the parameters are on the cpu")
        raise AvatarError(
            f"--hash-grid {requested} runs on a CUDA GPU, but this runs on the cpu",
            fix="Pass --hash-grid auto (or torch), or --device cuda on a machine with a GPU",
        )
    tcnn = tcnn_unavailable_reason()
    if requested == "tcnn":
        if tcnn is not None:
            raise AvatarError(f"--hash-grid tcnn: {tcnn}", fix=_TCNN_FIX)
        return BackendChoice("tcnn")
    kernels = cuda_kernels_unavailable_reason()
    if requested == "cuda":
        if kernels is not None:
            raise AvatarError(f"--hash-grid cuda: {kernels}", fix="Pass --hash-grid auto")
        return BackendChoice("cuda")
    if tcnn is None:
        return BackendChoice("tcnn")
    return BackendChoice("cuda", tcnn) if kernels is None else BackendChoice("torch", f"{tcnn}; {kernels}")
