"""scripts/check_cuda_sources.py: every CUDA source compiles, the extension links, imports and matches its callers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_cuda_sources.py"


@pytest.mark.slow
def test_cuda_sources_compile_link_and_match_their_callers():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    if "nvcc not found" in result.stdout:
        pytest.skip("no CUDA toolkit on this machine")
    sources = sorted(path.name for path in (REPO / "cuda_ext" / "csrc").glob("*.cu"))
    for name in sources:
        assert f"ok  {name}" in result.stdout
    assert "ok  bindings.cpp" in result.stdout and "all CUDA sources compile" in result.stdout


def test_tile_size_is_one_number_in_the_reference_the_wrapper_and_the_kernels():
    import re

    from avatar.render.tiles import TILE_SIZE as reference
    from cuda_ext.rasterize import TILE_SIZE as wrapper

    kernels = re.search(r"constexpr int kTileSize = (\d+);", (REPO / "cuda_ext/csrc/common.cuh").read_text())
    assert kernels is not None and int(kernels.group(1)) == wrapper == reference
