"""Typed, versioned records: round trips, refusal of other formats and versions, files written by 136ed14."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import pytest

from avatar.audio.features import AudioFeatureConfig
from avatar.core.errors import AvatarError
from avatar.core.records import Record
from avatar.data.head_window import HeadWindow
from avatar.data.manifest import CaptureReport, DatasetManifest, FileFingerprint, PixelSquare, SourceVideo
from avatar.runs.record import FitSummary, RunRecord
from avatar.runs.settings import PRESETS, FitConfig, Stage

WRITTEN_BY_MAIN = Path(__file__).parent / "data" / "written_by_136ed14"


@dataclass(frozen=True)
class _Inner:
    name: str
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class _Example(Record):
    FORMAT: ClassVar[str] = "example"
    VERSION: ClassVar[int] = 3

    path: Path
    inner: _Inner
    inners: tuple[_Inner, ...]
    table: dict[str, float]
    maybe: float | None = None


def test_record_round_trips_nested_types(tmp_path):
    record = _Example(Path("a/b"), _Inner("x", (1, 2)), (_Inner("y", ()),), {"k": 1.5})
    data = record.to_json()
    assert data["format"] == "example" and data["version"] == 3 and data["path"] == "a/b"
    record.write(tmp_path / "r.json")
    again = _Example.read(tmp_path / "r.json")
    assert again == record and isinstance(again.path, Path) and isinstance(again.inner.sizes, tuple)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "other"}, "not a example file"),
        ({"version": 2}, "format version 2, this splat-avatar reads version 3"),
        ({"unknown_field": 1}, "malformed"),
    ],
)
def test_record_refuses_other_formats_versions_and_fields(tmp_path, change, message):
    data = _Example(Path("a"), _Inner("x", ()), (), {}).to_json() | change
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AvatarError, match=message) as raised:
        _Example.read(path)
    assert raised.value.path == path


def test_missing_and_corrupt_record_files_are_clear_errors(tmp_path):
    with pytest.raises(AvatarError, match="there is no r.json"):
        _Example.read(tmp_path / "r.json")
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(AvatarError, match="corrupt"):
        _Example.read(tmp_path / "r.json")


def test_dataset_manifest_and_run_record_written_by_136ed14_still_load():
    manifest = DatasetManifest.read(WRITTEN_BY_MAIN / "dataset.json")
    assert manifest.num_frames == 300 and manifest.audio_features == AudioFeatureConfig()
    assert manifest.audio_features_shape == (300, 16, 80)
    assert manifest.to_json() == json.loads((WRITTEN_BY_MAIN / "dataset.json").read_text())
    run = RunRecord.read(WRITTEN_BY_MAIN / "run.json")
    # it updated the mouth-motion predictors once a step, as a run without the setting reads
    assert run.settings == replace(PRESETS["tiny"], motion_updates=1) and run.fit.preset == "tiny"
    written = json.loads((WRITTEN_BY_MAIN / "run.json").read_text())
    assert run.window == HeadWindow(**written["window"])
    assert run.dataset_source == manifest.source and run.K_window.shape == (3, 3)
    added_since = {
        "phone_dropout",
        "log_mel_dropout",
        "tracked_motion",
        "lip_gap_weight",
        "steps_torso",
        "torso_gaussians",
        "torso_resolution",
        "motion_updates",
    }  # settings that came later read as their defaults
    assert set(run.to_json()["settings"]) - set(written["settings"]) == added_since
    written["settings"].update({name: run.to_json()["settings"][name] for name in added_since})
    assert set(run.to_json()["fit"]) - set(written["fit"]) == {"torso"} and run.fit.torso
    written["fit"]["torso"] = True
    assert run.to_json() == written


def test_capture_report_and_fit_summary_round_trip():
    report = CaptureReport(
        frames_total=10, frames_tracked=9, frames_interpolated=1, frames_missing=0, fps=25.0, size=512,
        focal_px=800.0, focal_estimated=True, reprojection_error_px=0.5, reprojection_error_px_max=1.0, blinks=2,
        multi_face_frames=0, background_unseen_fraction=0.1, background_face_found=False, train_frames=9,
        val_frames=1, seconds=2.0, stage_seconds={"track": 1.0},
        source=SourceVideo("v.mp4", 720, 1280, 90, "hevc", 0.4, 30.0), crop=PixelSquare(0, 100, 720),
        warnings=("short clip",),
    )  # fmt: skip
    assert CaptureReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    assert report.frames_per_second == 5.0
    summary = FitSummary(
        Path("run"), 10, 1.5, 30.0, 4000, 0, "cpu", "torch", "the inputs are on the cpu", "X", 7, 2
    )
    assert FitSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary


def test_fit_config_with_literals_and_paths_round_trips_through_run_json():
    record = RunRecord.read(WRITTEN_BY_MAIN / "run.json")
    changed = replace(record, fit=replace(record.fit, backend="gsplat", dataset=Path("elsewhere")))
    again = RunRecord.from_json(json.loads(json.dumps(changed.to_json())))
    assert again.fit == changed.fit and isinstance(again.fit, FitConfig)
    assert again.dataset_source == FileFingerprint(**record.to_json()["dataset_source"])


def test_stages_follow_the_schedule():
    tiny = PRESETS["tiny"]
    assert [tiny.stage(s) for s in (0, tiny.steps_canonical, tiny.total_steps - 1)] == list(Stage)
    assert not Stage.CANONICAL.deforms and Stage.AUDIO.deforms and Stage.MOUTH.deforms
