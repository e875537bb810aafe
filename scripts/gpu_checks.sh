#!/usr/bin/env bash
# The checks that need a CUDA GPU, in parts that each fit in a ten-minute run (docs/gpu_checks.md):
#
#   scripts/gpu_checks.sh tests            build the kernels, then the GPU parity tests (JUnit XML to RESULTS)
#   scripts/gpu_checks.sh render           scripts/bench_render.py: rasterizer backends and the driven frame
#   scripts/gpu_checks.sh fit DATASET      scripts/bench_fit.py: the default preset, our kernels vs PyTorch
#
# RESULTS (default bench/results) receives every JSON result and log; PYTHON (default python3) runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
RESULTS="${RESULTS:-bench/results}"
export PYTHONUNBUFFERED=1
mkdir -p "$RESULTS"

part="${1:-}"
case "$part" in
  tests)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    "$PYTHON" -m cuda_ext.build
    # Only the modules with GPU tests: the others import capture dependencies a GPU box may not have.
    "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$RESULTS/gpu-tests.xml" \
      tests/test_cuda_parity.py tests/test_hash_grid.py
    ;;
  render)
    "$PYTHON" -m cuda_ext.build
    "$PYTHON" scripts/bench_render.py --out "$RESULTS" "${@:2}"
    ;;
  fit)
    [ -n "${2:-}" ] || { echo "usage: $0 fit DATASET [bench_fit.py options]" >&2; exit 2; }
    "$PYTHON" -m cuda_ext.build
    "$PYTHON" scripts/bench_fit.py "$2" --device cuda --out "$RESULTS" "${@:3}"
    ;;
  *)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
