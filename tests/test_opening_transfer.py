"""The opening transfer: how far a rendered mouth opens against the real one, and the gain correction from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar.data.dataset import Dataset
from avatar.drive.opening_transfer import (
    MAX_CORRECTION,
    MIN_MEASURED,
    OpeningTransfer,
    cached_opening_transfer,
    measure_opening_transfer,
    measurement_frames,
)
from avatar.model.deformation import FrameConditions


def _transfer(rendered: float, real: float = 0.1, frames: int = 40, step: int = 100) -> OpeningTransfer:
    return OpeningTransfer(checkpoint_step=step, frames=frames, rendered_spread=rendered, real_spread=real)


def test_the_correction_is_the_inverse_transfer_within_its_bounds():
    assert _transfer(0.08).transfer == pytest.approx(0.8)
    assert _transfer(0.08).correction == pytest.approx(1.25)
    assert _transfer(0.125).correction == pytest.approx(0.8)  # a render that opens wider is brought down
    assert _transfer(0.01).correction == MAX_CORRECTION
    assert _transfer(1.0).correction == pytest.approx(1 / MAX_CORRECTION)
    for unmeasured in (
        _transfer(0.08, frames=MIN_MEASURED - 1),
        _transfer(0.08, real=0.0),
        _transfer(math.nan, real=math.nan, frames=0),
        _transfer(0.0),
    ):
        assert unmeasured.correction == 1.0


def test_measurement_frames_spread_over_the_training_frames():
    train = np.arange(10, 410, 2)
    frames = measurement_frames(train, 40)
    assert len(frames) == 40 and frames[0] == 10 and frames[-1] == 408 and set(frames) <= set(train)
    assert np.all(np.diff(frames) > 0)
    np.testing.assert_array_equal(measurement_frames(train[:5], 40), train[:5])
    assert len(measurement_frames(np.zeros(0, np.int64))) == 0


def test_a_kept_transfer_is_read_back_for_its_checkpoint_only(tmp_path):
    path = tmp_path / "opening_transfer.json"
    calls = []

    def measure(step: int) -> OpeningTransfer:
        calls.append(step)
        return _transfer(0.07, step=step)

    first = cached_opening_transfer(path, 100, lambda: measure(100))
    assert first == OpeningTransfer.read(path) and calls == [100]
    assert cached_opening_transfer(path, 100, lambda: measure(100)) == first and calls == [100]
    later = cached_opening_transfer(path, 200, lambda: measure(200))  # another checkpoint: measured again
    assert later.checkpoint_step == 200 and calls == [100, 200]
    path.write_text("{ not json")  # a corrupt file is measured again, and replaced
    assert cached_opening_transfer(path, 200, lambda: measure(200)) == later and calls == [100, 200, 200]
    assert OpeningTransfer.read(path) == later


def test_an_unwritable_run_is_measured_without_keeping_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    path = blocker / "opening_transfer.json"  # under a file: no one can write it, root neither
    measured = cached_opening_transfer(path, 5, lambda: _transfer(0.05, step=5))
    assert measured.checkpoint_step == 5 and not path.exists()


def test_measuring_renders_each_frame_with_its_tracked_motion(sample_dataset):
    dataset = Dataset(sample_dataset[0])
    frames = measurement_frames(dataset.split.train, 12)
    tracked = np.random.default_rng(0).normal(size=(dataset.num_frames, 4, 3)).astype(np.float32)
    seen = []

    def conditions(index: int) -> FrameConditions:
        return FrameConditions(audio=torch.zeros(1, 9, 16, 3), eye=torch.ones(1), view=torch.ones(1, 3))

    def render(index: int, given: FrameConditions) -> np.ndarray:
        seen.append(index)
        torch.testing.assert_close(given.motion, torch.from_numpy(tracked[index][None]))
        return dataset.frame(index)  # a perfect render: the real frame

    transfer = measure_opening_transfer(render, conditions, dataset.frame, tracked, frames, checkpoint_step=7)
    assert seen == frames.tolist()
    assert transfer.frames == len(frames) and transfer.checkpoint_step == 7
    assert transfer.transfer == pytest.approx(1.0) and transfer.correction == pytest.approx(1.0)
    assert transfer.real_spread > 0
