from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # real media beside the checkout


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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory):
    """The built-in sample clip (12 s) and its ground truth, generated once per test session."""
    from avatar.sample.clip import make_sample_clip

    return make_sample_clip(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory, sample_clip):
    """The sample clip captured at the default settings."""
    from capture.config import CaptureConfig
    from capture.pipeline import run_capture

    out = tmp_path_factory.mktemp("sample_dataset") / "dataset"
    report = run_capture(CaptureConfig(video=sample_clip.video, out=out))
    return out, report


@pytest.fixture(scope="session")
def sample_runs(tmp_path_factory, sample_dataset):
    """The tiny preset fitted to the sample and evaluated (a dict, so that other variants can join it)."""
    from avatar.eval.evaluate import EvalConfig, evaluate
    from avatar.runs.settings import FitConfig
    from avatar.train.trainer import run_fit

    root = tmp_path_factory.mktemp("runs")
    dataset, _ = sample_dataset
    results = {}
    out = root / "audio"
    run_fit(FitConfig(dataset=dataset, out=out, preset="tiny", device="cpu", progress=False))
    metrics = evaluate(EvalConfig(run=out, json=out / "eval.json", device="cpu", progress=False))
    results["audio"] = (out, metrics)
    return results
