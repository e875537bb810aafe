"""The trainer's pieces alone: loss terms, the densification strategy's hooks, training state, the log."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avatar.face.landmarks import MOUTH_AND_JAW
from avatar.model.talking_head import ClipSignals
from avatar.runs.settings import PRESETS, Stage
from avatar.train.data import TrainingData
from avatar.train.densify import DensifyState
from avatar.train.frames import TargetFrame
from avatar.train.log import COLUMNS, TrainLog
from avatar.train.losses import (
    LossTerms,
    absolute_error,
    alpha_loss,
    dssim_loss,
    l1_loss,
    lip_gap_loss,
    motion_loss,
    mouth_region_loss,
    offset_loss,
)
from avatar.train.state import TrainingState, head_extent
from avatar.train.step import TrainStep
from avatar.train.strategy import DensifyStrategy
from tests.test_model_talking_head import clip_arrays, make_head

TINY = PRESETS["tiny"]


def test_image_losses_are_zero_on_a_perfect_render_and_measure_the_error():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(16, 16, 3, generator=generator)
    assert l1_loss(absolute_error(target, target)) == 0 and dssim_loss(target, target).abs() < 1e-6
    assert l1_loss(absolute_error(target + 0.1, target)) == pytest.approx(0.1, abs=1e-6)
    assert dssim_loss(torch.rand(16, 16, 3, generator=generator), target) > 0.5
    head = torch.zeros(16, 16, 1)
    head[4:12, 4:12] = 1
    assert alpha_loss(head, head) == 0 and alpha_loss(torch.zeros_like(head), head) == pytest.approx(64 / 256)


def test_mouth_loss_averages_inside_the_mouth_only():
    target = torch.zeros(8, 8, 3)
    rgb = torch.zeros(8, 8, 3)
    rgb[0, 0] = 1.0  # an error outside the mouth
    mouth = torch.zeros(8, 8, 1)
    mouth[4:6, 4:6] = 1
    assert mouth_region_loss(absolute_error(rgb, target), mouth) == 0
    rgb[4, 4] = 0.5
    assert mouth_region_loss(absolute_error(rgb, target), mouth) == pytest.approx(0.5 / 4)
    assert mouth_region_loss(absolute_error(rgb, target), torch.zeros_like(mouth)) == 0  # no mouth in view


def test_offset_and_motion_losses_are_in_their_units():
    canonical = torch.zeros(5, 3)
    assert offset_loss(canonical + torch.tensor([0.01, 0.0, 0.0]), canonical) == pytest.approx(1.0)  # 1 cm
    predicted = torch.zeros(2, 3, 3)
    target = torch.zeros(2, 3, 3)
    target[..., 1] = 0.004
    assert motion_loss(predicted, target, sigma=0.002) == pytest.approx(4.0)


def test_lip_gap_loss_measures_only_how_far_the_lips_are_apart():
    predicted = torch.zeros(2, 4, 3)
    target = torch.zeros(2, 4, 3)
    target[:, [0, 1]] += torch.tensor([0.001, 0.002, 0.0])  # both lips move together: no gap change
    assert lip_gap_loss(predicted, target, [0], [1], sigma=0.002) == pytest.approx(0.0)
    target[:, 1, 1] += 0.004  # the lower lip drops 4 mm more
    assert lip_gap_loss(predicted, target, [0], [1], sigma=0.002) == pytest.approx(2.0)
    target[0, 1, 1] -= 0.008  # one frame's gap is now -4 mm: absolute, so still 2 sigma on average
    assert lip_gap_loss(predicted, target, [0], [1], sigma=0.002) == pytest.approx(2.0)
    assert lip_gap_loss(target, target, [0, 2], [1, 3], sigma=0.002) == 0.0


def test_total_weighs_the_terms_and_doubles_the_mouth_in_the_mouth_stage():
    one = torch.tensor(1.0)
    zero = torch.tensor(0.0)
    terms = LossTerms(l1=one, dssim=zero, alpha=zero, mouth=zero, offsets=zero, motion=zero)
    assert terms.total(TINY, Stage.AUDIO) == pytest.approx(1 - TINY.ssim_weight)
    mouth = replace(terms, l1=zero, mouth=one)
    assert mouth.total(TINY, Stage.MOUTH) == pytest.approx(2 * mouth.total(TINY, Stage.AUDIO))
    values = terms.values(terms.total(TINY, Stage.CANONICAL))
    assert list(values) == ["loss", "l1", "dssim", "alpha", "mouth", "offsets", "motion"]
    assert values["l1"] == 1.0


class _Render:
    """The part of a RenderOutput the strategy reads."""

    def __init__(self, n: int):
        self.means2d = torch.zeros(n, 2, requires_grad=True)
        self.radii = torch.ones(n, dtype=torch.int32)


def test_strategy_accumulates_after_backward_and_densifies_on_schedule():
    model = make_head(300)
    state = TrainingState.start(model, TINY, seed=0)
    strategy = DensifyStrategy(
        grad_threshold=1e-9, min_opacity=0.0, max_count=400, extent=head_extent(model), every=5, until=12
    )
    densify = DensifyState.zeros(model.gaussians.num)
    counts = []
    for step in range(15):
        out = _Render(model.gaussians.num)
        strategy.step_pre_backward(out)
        (out.means2d * torch.arange(1.0, out.means2d.numel() + 1).view_as(out.means2d)).sum().backward()
        strategy.step_post_backward(step, out, densify, image_size=64)
        strategy.step_post_optimizer(step, model, state.optimizer, densify)
        counts.append(model.gaussians.num)
    # densifies at done == 10 only (not at 5: the first interval only gathers statistics; not after `until`)
    assert counts[:9] == [300] * 9 and counts[9] == 400 and counts[-1] == 400
    assert densify.num == 400 and int(densify.visits.sum()) == 400 * 2  # steps 10 and 11 since the reset


def test_strategy_resets_opacities_on_schedule():
    model = make_head(50)
    state = TrainingState.start(model, TINY, seed=0)
    strategy = DensifyStrategy(1.0, 0.0, 50, 0.1, every=1000, until=100, opacity_reset_every=3)
    with torch.no_grad():
        model.gaussians.opacity_logits.fill_(5.0)
    densify = DensifyState.zeros(50)
    strategy.step_post_optimizer(1, model, state.optimizer, densify)
    assert model.gaussians.activated().opacities.min() > 0.9
    strategy.step_post_optimizer(2, model, state.optimizer, densify)  # done == 3
    assert model.gaussians.activated().opacities.max() <= 0.0100001


def test_training_state_save_and_restore_continue_identically(tmp_path):
    model = make_head(200)
    state = TrainingState.start(model, TINY, seed=3)
    loss = model.gaussians.activated().colors.square().sum()
    loss.backward()
    state.optimizer.step()
    state.rng.integers(10, size=5)
    state.save(tmp_path, 7, 12.5, finished=False)
    restored = TrainingState.restore(tmp_path, TINY, torch.device("cpu"), "torch")
    assert restored.step == 7 and restored.elapsed == 12.5 and not restored.finished
    assert restored.rng.integers(1 << 30) == state.rng.integers(1 << 30)
    for (name, a), b in zip(state.model.state_dict().items(), restored.model.state_dict().values()):
        assert torch.equal(a, b), name
    saved_moments = [s["exp_avg"] for s in state.optimizer.state.values() if "exp_avg" in s]
    restored_moments = [s["exp_avg"] for s in restored.optimizer.state.values() if "exp_avg" in s]
    assert len(saved_moments) == len(restored_moments) > 0
    assert all(torch.equal(a, b) for a, b in zip(saved_moments, restored_moments))


def test_train_log_writes_rows_and_appends_on_resume(tmp_path):
    path = tmp_path / "train_log.csv"
    terms = dict.fromkeys(("loss", "l1", "dssim", "alpha", "mouth", "offsets", "motion"), 0.5)
    with TrainLog(path, append=False) as log:
        log.write(1, Stage.CANONICAL, terms, 100, math.nan, 0.25)
    with TrainLog(path, append=True) as log:
        log.write(2, Stage.AUDIO, terms, 120, 30.0, 0.5)
    rows = list(csv.reader(path.open()))
    assert rows[0] == list(COLUMNS) and [row[:2] for row in rows[1:]] == [["1", "canonical"], ["2", "audio"]]
    with TrainLog(path, append=False) as log:  # a new run starts the file again
        pass
    assert len(list(csv.reader(path.open()))) == 1


def _step(model, settings, smiling: np.ndarray | None = None) -> TrainStep:
    """A TrainStep over 12 synthetic frames (no images needed for the conditions and the motion loss)."""
    arrays = clip_arrays()
    arrays["audio_features"] = (
        np.random.default_rng(2).random(arrays["audio_features"].shape).astype(np.float32)
    )
    signals = ClipSignals(
        arrays["audio_features"], arrays["eye_openness"], arrays["rotations"], arrays["translations"]
    )
    targets = torch.randn(13, len(MOUTH_AND_JAW), 3) * 0.003
    data = TrainingData(
        frames=SimpleNamespace(indices=np.arange(12)),  # the conditions read only the training indices
        val=None,
        signals=signals,
        motion_targets=targets,
        smiling=np.zeros(12, bool) if smiling is None else smiling,
        K=torch.eye(3),
        resolution=16,
        background=torch.zeros(16, 16, 3),
    )
    return TrainStep(model, data, settings, "torch")


def _target(index: int) -> TargetFrame:
    return TargetFrame(
        index, torch.zeros(16, 16, 3), torch.zeros(16, 16, 1), torch.zeros(16, 16, 1), torch.eye(4)
    )


def test_training_conditions_show_the_tracked_motion_and_drop_phones_as_set():
    model = make_head(100)
    n_mels = model.config.n_mels
    always = replace(TINY, tracked_motion=1.0, phone_dropout=1.0, audio_augmentation=0.0, view_swap=0.0)
    step = _step(model, always)
    conditions = step.conditions(_target(5), Stage.AUDIO, torch.Generator().manual_seed(0))
    torch.testing.assert_close(conditions.motion, step.data.motion_targets[5][None])
    own = step.data.signals.conditions([5], window=model.window)
    torch.testing.assert_close(conditions.audio[..., :n_mels], own.audio[..., :n_mels])
    assert not conditions.audio[..., n_mels:].any() and own.audio[..., n_mels:].any()

    never = replace(always, tracked_motion=0.0, phone_dropout=0.0, log_mel_dropout=0.0)
    conditions = _step(model, never).conditions(_target(5), Stage.AUDIO, torch.Generator().manual_seed(0))
    assert conditions.motion is None
    torch.testing.assert_close(conditions.audio, own.audio)
    canonical = _step(model, always).conditions(_target(5), Stage.CANONICAL, torch.Generator())
    assert canonical.motion is None
    silent_model = make_head(100, audio_enabled=False)  # the no-audio ablation must not see the mouth either
    conditions = _step(silent_model, always).conditions(_target(5), Stage.AUDIO, torch.Generator())
    assert conditions.motion is None


def test_phone_dropout_is_drawn_per_sample():
    model = make_head(100)
    step = _step(model, replace(TINY, phone_dropout=0.5, audio_augmentation=0.0))
    audio = step.data.signals.conditions(list(range(12)) * 20, window=model.window).audio
    dropped = ~step._augmented(audio, torch.Generator().manual_seed(0))[..., model.config.n_mels :].flatten(
        1
    ).any(1)
    assert 0.3 < float(dropped.float().mean()) < 0.7


def test_some_samples_with_phones_hear_them_alone():
    model = make_head(100)
    n_mels = model.config.n_mels
    step = _step(model, replace(TINY, phone_dropout=0.0, log_mel_dropout=0.5, audio_augmentation=0.0))
    audio = step.data.signals.conditions(list(range(12)) * 20, window=model.window).audio
    audio[::4, ..., n_mels:] = 0.0  # a quarter of the samples have no phones: they keep their voice
    heard = step._augmented(audio, torch.Generator().manual_seed(0))
    voiceless = ~heard[..., :n_mels].flatten(1).any(1)
    assert not voiceless[::4].any()
    assert 0.3 < float(voiceless.float().mean() / 0.75) < 0.7
    torch.testing.assert_close(heard[..., n_mels:], audio[..., n_mels:])  # the phones are kept
    kept = ~voiceless
    torch.testing.assert_close(heard[kept], audio[kept])


def test_each_motion_predictor_learns_from_batches_of_its_own():
    model = make_head(100)
    step = _step(model, replace(TINY, silence_probability=0.0, audio_augmentation=0.0, phone_dropout=0.0))
    field = model.deformation
    members = len(field.motion_predictors)
    seen: list[torch.Tensor] = []
    hooks = [
        member.register_forward_hook(lambda _, args, out: seen.append(args[0]))
        for member in field.motion_predictors
    ]
    loss = step.mouth_motion(torch.Generator().manual_seed(3))
    for hook in hooks:
        hook.remove()
    assert len(seen) == members and all(len(batch) == TINY.motion_batch for batch in seen)
    assert not torch.equal(seen[0], seen[1])  # not the same frames
    loss.backward()
    for member in field.motion_predictors:  # every member is trained
        assert float(member.head.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("updates", [1, 3])
def test_extra_motion_updates_move_only_what_the_motion_loss_reaches(updates):
    model = make_head(100)
    step = _step(model, replace(TINY, motion_updates=updates))
    state = TrainingState.start(model, step.settings, seed=0)
    step.mouth_motion(torch.Generator().manual_seed(0)).backward()
    reached = {name for name, param in model.named_parameters() if param.grad is not None}
    assert reached and any("motion_predictors" in name for name in reached)
    state.optimizer.zero_grad(set_to_none=True)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    generator = torch.Generator().manual_seed(1)
    first = float(step.mouth_motion(torch.Generator().manual_seed(1)).detach())
    step.update_mouth_motion(state.optimizer, generator)
    moved = {name for name, param in model.named_parameters() if not torch.equal(param, before[name])}
    assert moved == (reached if updates > 1 else set())
    if updates > 1:  # two Adam steps on the motion loss lower it on the first step's batch
        assert float(step.mouth_motion(torch.Generator().manual_seed(1)).detach()) < first


def test_the_mouth_motion_learns_only_from_the_frames_that_do_not_smile():
    model = make_head(100)
    settings = replace(TINY, silence_probability=0.0, audio_augmentation=0.0, phone_dropout=0.0)
    step = _step(model, settings, smiling=np.arange(12) >= 6)
    step.data.motion_targets[6:12] = float("nan")  # the smiling frames' targets: read, they poison the loss
    for seed in range(5):
        assert torch.isfinite(step.mouth_motion(torch.Generator().manual_seed(seed)))
    everything = _step(model, settings)
    everything.data.motion_targets[6:12] = float("nan")
    assert not torch.isfinite(everything.mouth_motion(torch.Generator().manual_seed(0)))


def test_a_smiling_frame_is_always_rendered_with_its_tracked_motion():
    model = make_head(100)
    settings = replace(TINY, tracked_motion=0.0, view_swap=0.0)
    step = _step(model, settings, smiling=np.arange(12) == 3)
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        smiling = step.conditions(_target(3), Stage.AUDIO, generator)
        torch.testing.assert_close(smiling.motion, step.data.motion_targets[3][None])
        assert step.conditions(_target(4), Stage.AUDIO, generator).motion is None
