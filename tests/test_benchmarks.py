"""The benchmark scripts run on the CPU: fitting speed per backend, the whole driven frame, the result files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench_fit  # noqa: E402
import bench_record  # noqa: E402
import bench_render  # noqa: E402

from avatar.model import DeformationConfig  # noqa: E402


def test_stage_timings_split_the_loop_clock_by_stage(tmp_path):
    log = tmp_path / "train_log.csv"
    log.write_text(
        "step,stage,gaussians,seconds\n"
        "1,canonical,100,0.5\n2,canonical,120,1.0\n3,audio,120,2.0\n4,audio,130,3.0\n5,mouth,130,3.5\n"
    )
    stages = bench_fit.stage_timings(log)
    assert stages == {
        "canonical": {"steps": 2, "seconds": 1.0, "gaussians": 120, "seconds_per_step": 0.5},
        "audio": {"steps": 2, "seconds": 2.0, "gaussians": 130, "seconds_per_step": 1.0},
        "mouth": {"steps": 1, "seconds": 0.5, "gaussians": 130, "seconds_per_step": 0.5},
    }
    tiny = bench_fit.PRESETS["tiny"]
    expected = 0.5 * tiny.steps_canonical + 1.0 * tiny.steps_audio + 0.5 * tiny.steps_mouth
    assert bench_fit.projected_seconds(stages, "tiny") == pytest.approx(expected)


def test_fit_benchmark_times_each_backend_pair_and_writes_its_record(sample_dataset, tmp_path, capsys):
    dataset, _ = sample_dataset
    argv = [str(dataset), "--preset", "tiny", "--steps", "12", "--device", "cpu", "--out", str(tmp_path)]
    assert bench_fit.main([*argv, "--pairs", "torch:torch", "torch:auto"]) == 0
    (path,) = tmp_path.glob("fit-*.json")
    record = json.loads(path.read_text())
    assert record["benchmark"] == "fit" and record["cpu_count"] >= 1 and record["commit"]
    assert record["command"] == " ".join(
        [Path(sys.executable).name, "scripts/bench_fit.py", *argv, "--pairs", "torch:torch", "torch:auto"]
    )
    first, second = record["results"]
    assert (first["rasterizer"], first["hash_grid"], second["hash_grid"]) == ("torch", "torch", "auto")
    for entry in record["results"]:
        assert entry["steps"] == 12
        assert sum(stage["steps"] for stage in entry["stages"].values()) == 12
        assert set(entry["stages"]) == {"canonical", "audio", "mouth"}
        assert entry["seconds"] > 0 and entry["projected_tiny_seconds"] > entry["seconds"]
    assert first["time_over_first"] == 1.0
    assert second["time_over_first"] == pytest.approx(second["seconds"] / first["seconds"])
    assert "torch:auto  12 steps" in capsys.readouterr().out


def test_fit_benchmark_reports_a_backend_that_cannot_run(sample_dataset, tmp_path, capsys):
    dataset, _ = sample_dataset
    argv = [str(dataset), "--steps", "2", "--device", "cpu", "--pairs", "cuda:cuda", "--out", str(tmp_path)]
    assert bench_fit.main(argv) == 2
    assert "--backend cuda runs on a CUDA GPU" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
    with pytest.raises(SystemExit):
        bench_fit.main([str(dataset), "--pairs", "cuda"])


def test_driven_frame_runs_audio_to_composited_image_with_gradients():
    size = 48
    scene, viewmat, K = bench_render.scene_on("cpu", 1500, size)
    forward, forward_backward, head = bench_render.driven_frame_steps(
        scene, viewmat, K, size, "torch", DeformationConfig.tiny(), hash_grid_backend="torch"
    )
    assert type(head.deformation.hash_grid).__name__ == "HashGridEncoding"
    image = forward()
    assert image.shape == (size, size, 3) and torch.isfinite(image).all()
    assert image.min() > 0  # the torso-over-background image shows wherever the head does not cover it
    assert image[size // 2, size // 2].sum() != image[0, 0].sum()  # the head covers the centre
    forward_backward()
    grads = {name: p.grad for name, p in head.named_parameters() if p.requires_grad}
    assert all(grad is not None for grad in grads.values()), [n for n, g in grads.items() if g is None]
    assert any(grad.abs().sum() > 0 for name, grad in grads.items() if name.startswith("deformation."))


def test_speed_ratios_divide_each_backend_by_the_cuda_one():
    def entry(part, num, backend, forward, both):
        return {
            "part": part,
            "gaussians": num,
            "backend": backend,
            "forward_ms": {"median": forward},
            "forward_backward_ms": {"median": both},
        }

    results = [
        entry("render", 10, "cuda", 1.0, 4.0),
        entry("render", 10, "gsplat", 1.5, 2.0),
        entry("render", 10, "torch", 30.0, 80.0),
        {"part": "render", "gaussians": 20, "backend": "gsplat", "skipped": "no gsplat"},
        entry("render", 20, "torch", 5.0, 5.0),
    ]
    ratios = bench_render.speed_ratios(results)
    assert ratios == [
        {"part": "render", "gaussians": 10, "backend": "gsplat", "over": "cuda",
         "forward_ms": 1.5, "forward_backward_ms": 0.5},
        {"part": "render", "gaussians": 10, "backend": "torch", "over": "cuda",
         "forward_ms": 30.0, "forward_backward_ms": 20.0},
    ]  # fmt: skip


def test_result_files_are_named_by_processor_and_hold_the_commit(tmp_path):
    header = bench_record.record_header(
        "demo", torch.device("cpu"), REPO / "scripts" / "demo.py", ["--x", "1"]
    )
    assert header["command"].endswith("scripts/demo.py --x 1")
    assert header["benchmark"] == "demo" and header["torch"] == torch.__version__
    assert len(header["commit"].split("-")[0]) == 40 or header["commit"] == "unknown"
    path = bench_record.write_record(tmp_path / "results", "demo", {**header, "results": [1]})
    assert path.parent == tmp_path / "results" and path.name.startswith("demo-")
    assert json.loads(path.read_text())["results"] == [1]
    assert not list(path.parent.glob("*.partial"))
