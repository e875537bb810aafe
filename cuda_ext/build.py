"""Compile the CUDA kernels of `cuda_ext/csrc` on first use and cache the built extension.

`load_extension()` builds with `torch.utils.cpp_extension.load` for the architecture of the GPU present
(`torch.cuda.get_device_capability`) into a cache directory named by a hash of the sources, the compiler flags,
the torch and CUDA toolkit versions and the architecture: any change to them builds afresh, an unchanged
tree loads in a fraction of a second. The cache root is `$AVATAR_CUDA_CACHE`, else
`$XDG_CACHE_HOME/splat-avatar/cuda_ext`, else `~/.cache/splat-avatar/cuda_ext`.

Without a CUDA build of torch, a visible GPU, a CUDA toolkit (nvcc) or ninja, or when the build fails,
`load_extension()` raises `CudaExtensionUnavailable` (a `CudaExtError` saying what is missing) and remembers
it for the rest of the process; the "auto" backends of the rasterizer and the hash grid then use PyTorch.

To compile at install time, so that the first render does not wait for the build (one to a few minutes):

    python -m cuda_ext.build            # build for the current GPU and print where it is cached
    python -m cuda_ext.build --verbose  # show the compiler commands and output
    python -m cuda_ext.build --force    # rebuild even when a cached build exists
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

from cuda_ext.errors import CudaExtensionUnavailable

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
BINDINGS = "bindings.cpp"
HOST_FLAGS = ("-O3",)
MIN_CAPABILITY = (6, 0)  # atomicAdd on doubles (the float64 hash grid's gradient)
CUDA_FLAGS = ("-O3", "-lineinfo")  # no --use_fast_math: exp and division stay as precise as torch's
_INSTALL_HINT = (
    "Install a CUDA build of torch and the matching CUDA toolkit (nvcc), or use backend='torch'; "
    "'python -m cuda_ext.build --verbose' shows the whole build"
)


_lock = threading.Lock()
_loaded: ModuleType | None = None
_failure: CudaExtensionUnavailable | None = None


def source_files() -> list[Path]:
    """Every file the build depends on: the .cu and .cpp sources and the headers they include."""
    patterns = ("*.cu", "*.cuh", "*.h", "*.cpp")
    return sorted(path for pattern in patterns for path in SOURCE_DIR.glob(pattern))


def compiled_sources() -> list[Path]:
    """The translation units: every .cu file and the one binding file."""
    return sorted(SOURCE_DIR.glob("*.cu")) + [SOURCE_DIR / BINDINGS]


def cache_root() -> Path:
    """Where built extensions are kept, one directory per build key."""
    if os.environ.get("AVATAR_CUDA_CACHE"):
        return Path(os.environ["AVATAR_CUDA_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "splat-avatar" / "cuda_ext"


def cuda_home() -> Path | None:
    """The CUDA toolkit torch's extension builder uses, or None when it has none with an nvcc."""
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    if home is None or not (Path(home) / "bin" / "nvcc").exists():
        return None
    return Path(home)


def unavailable_reason() -> str | None:
    """Why the extension cannot be built or run here (checked without compiling), or None."""
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch"
    if torch.cuda.get_device_capability() < MIN_CAPABILITY:
        found = ".".join(map(str, torch.cuda.get_device_capability()))
        return f"the GPU has compute capability {found}; the kernels need {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}"
    if cuda_home() is None:
        return "no CUDA toolkit was found (nvcc; set CUDA_HOME to the toolkit's directory)"
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja, which torch needs to build extensions, is not installed (pip install ninja)"
    return None


def gpu_architecture(device: torch.device | int | None = None) -> str:
    """The compute capability of a GPU as nvcc writes it, e.g. "90" for an H100."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}{minor}"


def _nvcc_version(home: Path) -> str:
    result = subprocess.run(
        [str(home / "bin" / "nvcc"), "--version"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "unknown nvcc"


def cuda_flags(architecture: str) -> list[str]:
    """nvcc flags: optimisation, machine code for this architecture and its PTX, which the driver compiles for
    a newer GPU in the same process (torch then adds no arch flags)."""
    return [
        *CUDA_FLAGS,
        f"-gencode=arch=compute_{architecture},code=sm_{architecture}",
        f"-gencode=arch=compute_{architecture},code=compute_{architecture}",
    ]


def build_key(architecture: str, toolkit_version: str) -> str:
    """Hash of everything that changes the built binary."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    parts = [
        " ".join(HOST_FLAGS),
        " ".join(cuda_flags(architecture)),
        torch.__version__,
        str(torch.version.cuda),
        toolkit_version,
        sys.version.split()[0],
    ]
    digest.update("\n".join(parts).encode())
    return digest.hexdigest()[:16]


def _build(verbose: bool, force: bool) -> ModuleType:
    reason = unavailable_reason()
    if reason is not None:
        raise CudaExtensionUnavailable(f"the CUDA extension cannot be built: {reason}", fix=_INSTALL_HINT)
    from torch.utils import cpp_extension

    home = cuda_home()
    architecture = gpu_architecture()
    key = build_key(architecture, _nvcc_version(home))
    directory = cache_root() / f"sm{architecture}-{key}"
    if force and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return cpp_extension.load(
            name=f"avatar_cuda_{key}",
            sources=[str(path) for path in compiled_sources()],
            extra_cflags=list(HOST_FLAGS),
            extra_cuda_cflags=cuda_flags(architecture),
            extra_include_paths=[str(SOURCE_DIR)],
            build_directory=str(directory),
            with_cuda=True,
            verbose=verbose,
        )
    except Exception as error:  # the compiler's output is in the message; keep its end
        message = str(error).strip()
        tail = message[-4000:] if len(message) > 4000 else message
        raise CudaExtensionUnavailable(
            f"building the CUDA extension in {directory} failed ({type(error).__name__}): {tail}",
            fix=_INSTALL_HINT,
        ) from error


def load_extension(*, verbose: bool = False, force: bool = False) -> ModuleType:
    """The compiled extension module, built now if this tree has not been built for this GPU yet.

    Raises CudaExtensionUnavailable (also on every later call in this process) when it cannot be built.
    """
    global _loaded, _failure
    with _lock:
        if _loaded is not None and not force:
            return _loaded
        if _failure is not None and not force:
            raise _failure
        try:
            _loaded = _build(verbose, force)
        except CudaExtensionUnavailable as error:
            _failure = error
            raise
        _failure = None
        return _loaded


def try_load_extension() -> ModuleType | None:
    """The extension module, or None when it is unavailable (see load_extension for why)."""
    try:
        return load_extension()
    except CudaExtensionUnavailable:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cuda_ext.build", description="Compile and cache the CUDA kernels for this GPU."
    )
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands and output")
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached build exists")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        module = load_extension(verbose=args.verbose, force=args.force)
    except CudaExtensionUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"CUDA extension ready for sm_{gpu_architecture()} ({torch.cuda.get_device_name()}) in "
        f"{time.perf_counter() - start:.1f} s: {module.__file__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
