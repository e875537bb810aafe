from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from filelock import FileLock

T = TypeVar("T")

SAMPLE_FIT = "sample_fit"  # the xdist group of the tests that use `sample_runs`
SAMPLE_FIT_STEPS = 600  # of the tiny preset's 1500, each stage scaled: the fit-pipeline tests hold here
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # real media beside the checkout


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # torch's default of a thread per core, in every worker, oversubscribes the cores
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    have_cuda = False
    try:
        import torch

        have_cuda = torch.cuda.is_available()
    except ImportError:
        pass
    for item in items:
        if "gpu" in item.keywords and not have_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "shared_data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"{SHARED_DATA} is absent"))
        if "sample_runs" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group(SAMPLE_FIT))


def once_per_test_run(tmp_path_factory, name: str, make: Callable[[Path], T]) -> T:
    """`make(directory)` computed once for the whole test run: with pytest-xdist, by the first worker that asks,
    while the others wait for it and read its (pickled) result."""
    from avatar.core.atomic import write_bytes

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    result = root / f"{name}.pickle"
    with FileLock(str(root / f"{name}.lock")):
        if result.is_file():
            return pickle.loads(result.read_bytes())
        directory = root / name
        directory.mkdir(exist_ok=True)
        value = make(directory)
        write_bytes(result, pickle.dumps(value))  # whole or absent: a killed worker leaves no half pickle
        return value


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory):
    """The built-in sample clip (12 s) and its ground truth, generated once per test run."""
    from avatar.sample.clip import make_sample_clip

    return once_per_test_run(tmp_path_factory, "sample", make_sample_clip)


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory, sample_clip):
    """The sample clip captured at the default settings."""
    from capture.config import CaptureConfig
    from capture.pipeline import run_capture

    def capture(directory: Path):
        out = directory / "dataset"
        return out, run_capture(CaptureConfig(video=sample_clip.video, out=out))

    return once_per_test_run(tmp_path_factory, "sample_dataset", capture)


@pytest.fixture(scope="session")
def sample_runs(tmp_path_factory, sample_dataset):
    """The tiny preset, shortened to SAMPLE_FIT_STEPS, fitted to the sample and evaluated (a dict, so that other
    variants can join it). Tests that use it join one xdist group, so that one worker fits it while the others
    go on."""
    from avatar.eval.evaluate import EvalConfig, evaluate
    from avatar.runs.settings import FitConfig
    from avatar.train.trainer import run_fit

    def fit(directory: Path):
        dataset, _ = sample_dataset
        out = directory / "audio"
        config = FitConfig(dataset, out, preset="tiny", steps=SAMPLE_FIT_STEPS, device="cpu", progress=False)
        run_fit(config)
        metrics = evaluate(EvalConfig(run=out, json=out / "eval.json", device="cpu", progress=False))
        return {"audio": (out, metrics)}

    return once_per_test_run(tmp_path_factory, "runs", fit)
