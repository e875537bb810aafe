"""Compile every source of cuda_ext/csrc without a GPU, and link and import the extension as far as possible.

    python scripts/check_cuda_sources.py [--arch 90 --arch 80] [--keep DIR]

Steps, one summary line each, in sequence (about a minute on two cores):
1. every .cu file: `nvcc -c -std=c++17 -O1` for each --arch (default sm_90 and sm_80). The kernels and
   launchers include no torch header, so this compiles everything that runs on the GPU, cub's sort included;
2. bindings.cpp (the only file with torch headers; it needs no CUDA header): the host compiler with torch's
   include paths and flags (`-std=c++20`, as torch.utils.cpp_extension uses for this torch), to an object;
3. link all objects with torch's libraries and libcudart into the extension module and import it in a fresh
   Python: every launcher bindings.cpp calls must be defined with the same signature, and the module must
   register its functions;
4. with that module behind cuda_ext's autograd wrappers, call each of its functions the way the wrappers do
   (forward and backward), with CPU tensors: each call must get past pybind's argument matching and stop at
   bindings.cpp's device check. Nothing runs on a GPU (a CPU torch cannot); tests/test_cuda_emulated.py runs
   the kernels themselves on the CPU.
Without nvcc (CUDA_HOME, /usr/local/cuda or PATH) it prints that and exits 0. Any failure prints the compiler's
output and exits 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "cuda_ext" / "csrc"
BINDINGS = SOURCES / "bindings.cpp"
MODULE_NAME = "avatar_cuda_check"
EXPECTED_FUNCTIONS = {
    "project_forward",
    "project_backward",
    "intersect_tiles",
    "rasterize_feature_counts",
    "rasterize_forward",
    "rasterize_backward",
    "hash_grid_forward",
    "hash_grid_backward",
}


class CheckFailed(Exception):
    pass


def find_nvcc() -> Path | None:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in filter(None, candidates):
        nvcc = Path(home) / "bin" / "nvcc"
        if nvcc.exists():
            return nvcc
    found = shutil.which("nvcc")
    return Path(found) if found else None


def cuda_library_dir(nvcc: Path) -> Path | None:
    home = nvcc.resolve().parent.parent
    for candidate in [home / "lib64", home / "lib", *sorted(home.glob("targets/*/lib"))]:
        if (candidate / "libcudart.so").exists():
            return candidate
    return None


def run(command: list[str], what: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise CheckFailed(f"{what} failed:\n$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    return elapsed


def compile_kernels(nvcc: Path, architectures: list[str], out: Path) -> list[Path]:
    objects = []
    gencode = [f"-gencode=arch=compute_{arch},code=sm_{arch}" for arch in architectures]
    archs = ",".join(f"sm_{arch}" for arch in architectures)
    for source in sorted(SOURCES.glob("*.cu")):
        target = out / f"{source.stem}.cu.o"
        command = [str(nvcc), "-c", "-std=c++17", "-O1", "-Xcompiler", "-fPIC", *gencode, f"-I{SOURCES}"]
        elapsed = run([*command, str(source), "-o", str(target)], f"nvcc {source.name}")
        print(f"ok  {source.name:<16} nvcc -std=c++17 -O1 for {archs}: {elapsed:.1f} s", flush=True)
        objects.append(target)
    return objects


def torch_host_flags() -> list[str]:
    import torch
    from torch.utils import cpp_extension

    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    return [
        "-std=c++20",
        "-O1",
        "-fPIC",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-DTORCH_EXTENSION_NAME={MODULE_NAME}",
        *includes,
        "-isystem",
        sysconfig.get_paths()["include"],
        f"-I{SOURCES}",
    ]


def compile_bindings(compiler: str, out: Path) -> Path:
    target = out / "bindings.o"
    elapsed = run([compiler, "-c", *torch_host_flags(), str(BINDINGS), "-o", str(target)], "bindings.cpp")
    print(f"ok  {BINDINGS.name:<16} {Path(compiler).name} -std=c++20 -O1 with torch headers: {elapsed:.1f} s")
    return target


# Runs in a fresh Python with the linked module at MODULE_PATH: every wrapper of cuda_ext must call the module
# with arguments pybind accepts, so that the call fails only at the device check of bindings.cpp.
_WRAPPER_PROBE = """
import importlib.util, sys, types, torch
sys.path.insert(0, REPO)
spec = importlib.util.spec_from_file_location(MODULE_NAME, MODULE_PATH)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import cuda_ext.hash_grid as hash_grid
import cuda_ext.rasterize as rasterize
from avatar.model.encoding.hash_grid import HashGridConfig
from avatar.model.encoding.hash_grid_cuda import _level_tensors

rasterize.load_extension = hash_grid.load_extension = lambda: module
n, size, zeros = 4, 32, torch.zeros
means, quats, scales, viewmat, K = zeros(n, 3), zeros(n, 4), zeros(n, 3), torch.eye(4), torch.eye(3)
radii, ids, offsets = zeros(n, dtype=torch.int32), zeros(0, dtype=torch.int32), zeros(5, dtype=torch.int32)
features, background, alpha = zeros(n, 4), zeros(4), zeros(size, size, 1)
bins = rasterize.CudaTileBins(zeros(0, dtype=torch.int64), ids, offsets, radii, 2, 2)
config = HashGridConfig(n_levels=2, n_features_per_level=2, log2_hashmap_size=8, base_resolution=4)
positions, params = zeros(n, 3), zeros(config.n_params)
scales, info = _level_tensors(config, torch.device("cpu"))
layout = (scales, info, config.n_features_per_level, 1)
calls = {
    "project_forward": lambda: rasterize.project_gaussians_cuda(means, quats, scales, viewmat, K, size, size),
    "project_backward": lambda: rasterize._ProjectGaussians.backward(
        types.SimpleNamespace(saved_tensors=(means, quats, scales, viewmat, K, radii), camera=(size, size, 0.3),
                              needs_input_grad=(True,) * 10),
        zeros(n, 2), zeros(n, 3), zeros(n), None, None),
    "intersect_tiles": lambda: rasterize.intersect_tiles_cuda(zeros(n, 2), radii, zeros(n), zeros(n, 3),
                                                              zeros(n), size, size),
    "rasterize_forward": lambda: rasterize.rasterize_to_pixels_cuda(
        zeros(n, 2), zeros(n, 3), zeros(n), features[:, :3], bins, size, size, background=background[:3]),
    "rasterize_backward": lambda: rasterize._RasterizeToPixels.backward(
        types.SimpleNamespace(saved_tensors=(zeros(n, 2), zeros(n, 3), zeros(n), features, background, ids,
                                             offsets, alpha, zeros(size, size, dtype=torch.int32)),
                              size=(size, size), needs_input_grad=(True,) * 9),
        zeros(size, size, 4), alpha),
    "hash_grid_forward": lambda: hash_grid.hash_grid_encode_cuda(positions, params, scales, info,
                                                                 config.n_features_per_level, "Linear"),
    "hash_grid_backward": lambda: hash_grid._HashGridCudaFunction.backward(
        types.SimpleNamespace(saved_tensors=(positions, params), layout=layout, positions_dtype=torch.float32,
                              needs_input_grad=(True, True) + (False,) * 4),
        zeros(n, config.n_output_dims)),
}
for name, call in calls.items():
    try:
        call()
    except RuntimeError as error:
        if "must be a CUDA tensor" not in str(error):
            raise
    else:
        raise AssertionError(name + " did not reach the device check")
print(len(calls))
"""


def link_and_import(compiler: str, objects: list[Path], cuda_lib: Path, out: Path) -> None:
    import torch

    torch_lib = Path(torch.__file__).parent / "lib"
    module = out / f"{MODULE_NAME}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    libraries = ["-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python", "-lcudart"]
    command = [compiler, "-shared", *map(str, objects), "-o", str(module), f"-L{torch_lib}", f"-L{cuda_lib}"]
    command += [*libraries, f"-Wl,-rpath,{torch_lib}", f"-Wl,-rpath,{cuda_lib}"]
    elapsed = run(command, "linking the extension")
    probe = (
        "import importlib.util, sys, torch\n"
        f"spec = importlib.util.spec_from_file_location({MODULE_NAME!r}, {str(module)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(' '.join(sorted(name for name in dir(module) if not name.startswith('_'))))\n"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckFailed(f"importing the linked extension failed:\n{result.stdout}{result.stderr}")
    functions = set(result.stdout.split())
    missing = EXPECTED_FUNCTIONS - functions
    if missing:
        raise CheckFailed(
            f"the extension lacks {', '.join(sorted(missing))} (it has {', '.join(sorted(functions))})"
        )
    elapsed += time.perf_counter() - start
    print(
        f"ok  {module.name} linked with libcudart and imported, {len(functions)} functions: {elapsed:.1f} s"
    )

    start = time.perf_counter()
    probe = (
        f"REPO, MODULE_NAME, MODULE_PATH = {str(REPO)!r}, {MODULE_NAME!r}, {str(module)!r}\n" + _WRAPPER_PROBE
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        report = result.stderr if len(result.stderr) < 4000 else result.stderr[:4000] + "\n[...]"
        raise CheckFailed(f"calling the extension through cuda_ext's wrappers failed:\n{report}")
    print(
        f"ok  cuda_ext wrappers: {result.stdout.strip()} calls (forward and backward) match the bindings' "
        f"signatures and stop at the device check: {time.perf_counter() - start:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", help="compute capability digits, e.g. 90 (repeatable)")
    parser.add_argument("--keep", type=Path, help="keep the objects and the module in this directory")
    args = parser.parse_args(argv)
    architectures = args.arch or ["90", "80"]

    nvcc = find_nvcc()
    if nvcc is None:
        print("nvcc not found (set CUDA_HOME): the CUDA sources were not compiled. CI compiles them.")
        return 0
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cuda_check_") as scratch:
        out = args.keep or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        try:
            objects = compile_kernels(nvcc, architectures, out)
            if compiler is None:
                print("no host C++ compiler: bindings.cpp was not compiled, the extension not linked")
                return 1
            objects.append(compile_bindings(compiler, out))
            cuda_lib = cuda_library_dir(nvcc)
            if cuda_lib is None:
                print(f"libcudart.so not found next to {nvcc}: the extension was not linked or imported")
            else:
                link_and_import(compiler, objects, cuda_lib, out)
        except CheckFailed as error:
            print(f"FAILED {error}", file=sys.stderr)
            return 1
    print(f"all CUDA sources compile ({time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
