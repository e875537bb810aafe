from __future__ import annotations

import math

import pytest
import torch

from avatar.model.gaussians import CanonicalGaussians, RowChange, inverse_sigmoid
from avatar.model.rigid import quat_to_rotmat
from avatar.train.densify import (
    SPLIT_SCALE_DIVISOR,
    DensifyState,
    densify_and_prune,
    remap_adam_state,
    reset_opacity,
)

EXTENT = 0.15
SETTINGS = dict(grad_threshold=2e-4, scale_threshold=0.01, min_opacity=0.005, extent=EXTENT)


def make_gaussians(scales: list[float], opacities: list[float], seed: int = 0) -> CanonicalGaussians:
    n = len(scales)
    gen = torch.Generator().manual_seed(seed)
    log_scales = torch.log(torch.tensor(scales))[:, None] + torch.tensor([0.0, -0.3, -0.6])  # anisotropic
    return CanonicalGaussians(
        means=torch.randn(n, 3, generator=gen) * 0.05,
        quats=torch.randn(n, 4, generator=gen),
        log_scales=log_scales,
        opacity_logits=inverse_sigmoid(torch.tensor(opacities)),
        color_logits=torch.randn(n, 3, generator=gen),
    )


def state_with_grads(grads: list[float]) -> DensifyState:
    state = DensifyState.zeros(len(grads))
    state.accumulate(torch.tensor([[g, 0.0] for g in grads]), torch.ones(len(grads), dtype=torch.bool))
    return state


def test_accumulate_averages_over_visible_views():
    state = DensifyState.zeros(3)
    grad = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    state.accumulate(grad, torch.tensor([True, True, False]))
    state.accumulate(grad * 3, torch.tensor([True, False, False]))
    torch.testing.assert_close(state.mean_grad(), torch.tensor([10.0, 1.0, 0.0]))
    assert state.visits.tolist() == [2, 1, 0]
    ndc = DensifyState.zeros(1)
    ndc.accumulate(torch.tensor([[1.0, 1.0]]), torch.tensor([True]), image_size=(8, 6))
    torch.testing.assert_close(ndc.mean_grad(), torch.tensor([5.0]))  # |(1 * 4, 1 * 3)|
    with pytest.raises(ValueError):
        state.accumulate(torch.zeros(2, 2), torch.ones(2, dtype=torch.bool))


def test_clone_split_prune_and_keep():
    # 0: small, high gradient -> cloned; 1: large, high gradient -> split; 2: transparent -> pruned;
    # 3: low gradient -> kept as is; 4: transparent with a high gradient -> pruned, not densified
    gaussians = make_gaussians([0.001, 0.01, 0.002, 0.003, 0.001], [0.5, 0.5, 0.001, 0.5, 0.001])
    before = {name: p.detach().clone() for name, p in gaussians.parameters_by_name().items()}
    state = state_with_grads([1e-3, 1e-3, 1e-3, 1e-5, 1e-3])
    result = densify_and_prune(
        gaussians, state, max_count=100, generator=torch.Generator().manual_seed(0), **SETTINGS
    )
    assert (result.num_cloned, result.num_split, result.num_pruned, result.num_added) == (1, 1, 2, 3)
    assert result.change.kept.tolist() == [True, False, False, True, False]
    assert gaussians.num == 2 + 1 + 2  # kept 0 and 3, the clone of 0, two children of 1
    assert state.num == gaussians.num and float(state.grad_norm_sum.abs().sum()) == 0.0
    after = gaussians.parameters_by_name()
    for name in after:
        torch.testing.assert_close(after[name][:2], before[name][[0, 3]])
        torch.testing.assert_close(after[name][2], before[name][0])  # the clone is an exact copy
        if name not in ("means", "log_scales"):
            torch.testing.assert_close(after[name][3:], before[name][[1, 1]])
    # the children are smaller than the parent, and inside it (within 3 standard deviations)
    parent_scales = torch.exp(before["log_scales"][1])
    torch.testing.assert_close(
        torch.exp(after["log_scales"][3:]), (parent_scales / SPLIT_SCALE_DIVISOR).expand(2, 3)
    )
    rotation = quat_to_rotmat(before["quats"][1:2])[0]
    local = (after["means"][3:].detach() - before["means"][1]) @ rotation  # parent's axes
    mahalanobis = (local / parent_scales).norm(dim=-1)
    assert bool((mahalanobis < 3.0).all())
    assert not torch.equal(after["means"][3], after["means"][4])


def test_split_children_follow_the_parent_distribution():
    gaussians = make_gaussians([0.02] * 2000, [0.5] * 2000)
    parents = gaussians.activated().index(torch.arange(2000))  # a copy: the parameters change in place
    result = densify_and_prune(
        gaussians,
        state_with_grads([1.0] * 2000),
        max_count=10_000,
        generator=torch.Generator().manual_seed(1),
        **SETTINGS,
    )
    assert result.num_split == 2000 and gaussians.num == 4000
    rotations = quat_to_rotmat(parents.quats).repeat_interleave(2, dim=0)
    offsets = gaussians.means.detach() - parents.means.repeat_interleave(2, dim=0)
    local = torch.einsum("nji,nj->ni", rotations, offsets) / parents.scales.repeat_interleave(2, dim=0)
    torch.testing.assert_close(
        local.std(0), torch.ones(3), atol=0.06, rtol=0
    )  # N(0, 1) in the parent's frame
    torch.testing.assert_close(local.mean(0), torch.zeros(3), atol=0.06, rtol=0)


def test_cap_densifies_only_the_highest_gradients():
    n = 10
    gaussians = make_gaussians([0.001] * n, [0.5] * n)
    before = gaussians.means.detach().clone()
    grads = [1e-3 * (i + 1) for i in range(n)]  # all over the threshold; the last three are the highest
    result = densify_and_prune(gaussians, state_with_grads(grads), max_count=n + 3, **SETTINGS)
    assert gaussians.num == n + 3 and result.num_cloned == 3
    torch.testing.assert_close(gaussians.means.detach()[n:], before[[7, 8, 9]])
    # at or over the cap: nothing is added, and nothing is pruned to reach it
    result = densify_and_prune(gaussians, state_with_grads([1.0] * (n + 3)), max_count=5, **SETTINGS)
    assert result.num_added == 0 and gaussians.num == n + 3


def test_pruning_makes_room_under_the_cap():
    gaussians = make_gaussians([0.001] * 6, [0.001, 0.001, 0.5, 0.5, 0.5, 0.5])
    result = densify_and_prune(gaussians, state_with_grads([1.0] * 6), max_count=6, **SETTINGS)
    assert (result.num_pruned, result.num_cloned, gaussians.num) == (2, 2, 6)


def test_optimizer_state_follows_the_rows():
    gaussians = make_gaussians([0.001, 0.01, 0.002, 0.003], [0.5, 0.5, 0.001, 0.5])
    groups = [{"params": [p], "lr": 1e-3 * (i + 1)} for i, p in enumerate(gaussians.parameters())]
    optimizer = torch.optim.Adam(groups)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        optimizer.zero_grad()
        for parameter in gaussians.parameters():
            parameter.grad = torch.randn(parameter.shape, generator=gen)
        optimizer.step()
    moments = {
        name: (optimizer.state[p]["exp_avg"].clone(), optimizer.state[p]["exp_avg_sq"].clone())
        for name, p in gaussians.parameters_by_name().items()
    }
    result = densify_and_prune(
        gaussians, state_with_grads([1e-3, 1e-3, 1e-3, 1e-5]), max_count=100, **SETTINGS
    )
    remap_adam_state(optimizer, result.change)
    for name, parameter in gaussians.parameters_by_name().items():
        state = optimizer.state[parameter]
        for key, old in zip(("exp_avg", "exp_avg_sq"), moments[name]):
            assert state[key].shape == parameter.shape
            torch.testing.assert_close(state[key][:2], old[[0, 3]])  # kept rows keep their moments
            assert float(state[key][2:].abs().sum()) == 0.0  # new rows start at zero
    # the same optimiser keeps training the resized parameters
    for parameter in gaussians.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    assert all(bool(torch.isfinite(p).all()) for p in gaussians.parameters())


def test_remap_after_keep_swaps_the_parameters_in_the_optimizer():
    gaussians = make_gaussians([0.001] * 3, [0.5] * 3)
    optimizer = torch.optim.Adam(gaussians.parameters())
    for parameter in gaussians.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    change = gaussians.keep(torch.tensor([True, False, True]))
    remap_adam_state(optimizer, change)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in gaussians.parameters()}
    assert all(optimizer.state[p]["exp_avg"].shape == p.shape for p in gaussians.parameters())
    assert all(old not in optimizer.state for old, _ in change.replaced)
    with pytest.raises(ValueError):
        remap_adam_state(optimizer, RowChange(kept=torch.ones(2, dtype=torch.bool), num_added=1))


def test_reset_opacity_caps_and_clears_moments():
    gaussians = make_gaussians([0.001] * 3, [0.9, 0.005, 0.3])
    optimizer = torch.optim.Adam(gaussians.parameters())
    for parameter in gaussians.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    before = gaussians.activated().opacities.detach()
    reset_opacity(gaussians, max_opacity=0.01, optimizer=optimizer)
    opacities = gaussians.activated().opacities.detach()
    torch.testing.assert_close(opacities, torch.tensor([0.01, float(before[1]), 0.01]), atol=1e-6, rtol=1e-4)
    assert float(before[1]) < 0.01
    assert float(optimizer.state[gaussians.opacity_logits]["exp_avg"].abs().sum()) == 0.0
    assert float(optimizer.state[gaussians.means]["exp_avg"].abs().sum()) > 0.0
    assert math.isclose(float(opacities.max()), 0.01, rel_tol=1e-4)
