from __future__ import annotations

import pytest
import torch

from avatar.model.gaussians import CanonicalGaussians, RowChange, inverse_sigmoid


def random_gaussians(n: int, seed: int = 0) -> CanonicalGaussians:
    gen = torch.Generator().manual_seed(seed)
    return CanonicalGaussians(
        means=torch.randn(n, 3, generator=gen) * 0.05,
        quats=torch.randn(n, 4, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen) - 5,
        opacity_logits=torch.randn(n, generator=gen),
        color_logits=torch.randn(n, 3, generator=gen),
    )


def test_activated_values_and_ranges():
    gaussians = random_gaussians(50)
    activated = gaussians.activated()
    assert activated.num == gaussians.num == 50
    torch.testing.assert_close(activated.quats.norm(dim=-1), torch.ones(50))
    torch.testing.assert_close(activated.scales, torch.exp(gaussians.log_scales))
    torch.testing.assert_close(activated.opacities, torch.sigmoid(gaussians.opacity_logits))
    assert activated.opacities.shape == (50,) and activated.colors.shape == (50, 3)
    assert bool(((activated.colors > 0) & (activated.colors < 1)).all())
    assert activated.means is gaussians.means  # gradients reach the parameter directly


def test_index_with_mask_and_indices():
    activated = random_gaussians(6).activated()
    mask = torch.tensor([True, False, True, False, False, True])
    by_mask = activated.index(mask)
    by_index = activated.index(torch.tensor([0, 2, 5]))
    assert by_mask.num == by_index.num == 3
    for name in ("means", "quats", "scales", "opacities", "colors"):
        torch.testing.assert_close(getattr(by_mask, name), getattr(by_index, name))
    torch.testing.assert_close(by_mask.means[1], activated.means[2])


def test_from_activated_round_trip():
    original = random_gaussians(20).activated()
    rebuilt = CanonicalGaussians.from_activated(original).activated()
    for name in ("means", "quats", "scales", "opacities", "colors"):
        torch.testing.assert_close(getattr(rebuilt, name), getattr(original, name), atol=1e-5, rtol=1e-5)


def test_inverse_sigmoid_clamps_to_finite_logits():
    values = inverse_sigmoid(torch.tensor([0.0, 0.25, 1.0]))
    assert bool(torch.isfinite(values).all())
    torch.testing.assert_close(torch.sigmoid(values[1]), torch.tensor(0.25))


def test_keep_and_append_replace_the_parameters():
    gaussians = random_gaussians(5)
    parameter = gaussians.means
    before = gaussians.means.detach().clone()
    gaussians.means.grad = torch.ones_like(gaussians.means)
    change = gaussians.keep(torch.tensor([True, False, True, True, False]))
    assert gaussians.means is not parameter and gaussians.means.grad is None
    assert change.replaced[0] == (parameter, gaussians.means)  # what the optimiser must swap
    assert len(change.replaced) == 5 and len(list(gaussians.parameters())) == 5
    assert (change.num_before, change.num_after, change.num_added) == (5, 3, 0)
    torch.testing.assert_close(gaussians.means.detach(), before[[0, 2, 3]])

    new = random_gaussians(2, seed=1)
    change = gaussians.append(*(p.detach() for p in new.parameters_by_name().values()))
    assert (change.num_before, change.num_after) == (3, 5)
    assert all(p.shape[0] == 5 for p in gaussians.parameters())
    torch.testing.assert_close(gaussians.color_logits.detach()[3:], new.color_logits.detach())
    with pytest.raises(ValueError):
        gaussians.keep(torch.ones(4, dtype=torch.bool))


def test_row_change_apply_fills_new_rows_with_zeros():
    change = RowChange(kept=torch.tensor([False, True, True]), num_added=2)
    rows = torch.arange(6.0).view(3, 2)
    torch.testing.assert_close(change.apply(rows), torch.tensor([[2.0, 3.0], [4.0, 5.0], [0, 0], [0, 0]]))


def test_state_dict_loads_into_a_different_count():
    source = random_gaussians(7)
    target = CanonicalGaussians.empty(3)
    target.load_state_dict(source.state_dict())
    assert target.num == 7
    torch.testing.assert_close(target.activated().colors, source.activated().colors)


def test_set_colors_from_an_image_sample():
    gaussians = random_gaussians(4)
    colors = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6], [1.0, 1.0, 1.0], [0.3, 0.3, 0.3]])
    gaussians.set_colors(colors)
    torch.testing.assert_close(gaussians.activated().colors, colors, atol=2e-4, rtol=0)
    assert bool(torch.isfinite(gaussians.color_logits).all())
