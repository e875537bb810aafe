"""Adaptive density control of 3D Gaussian splatting (Kerbl et al. 2023, section 5), on `CanonicalGaussians`.

Between densification steps, `DensifyState.accumulate` sums, per Gaussian, the norm of the loss gradient with
respect to its projected 2D mean over the views where it was visible. `densify_and_prune` then

- prunes Gaussians whose opacity is below `min_opacity` (and, optionally, whose largest scale exceeds
  `prune_scale * extent`);
- densifies the others whose mean gradient is at least `grad_threshold`: a small one (largest scale at most
  `scale_threshold * extent`) is cloned (an exact copy; the optimiser separates the pair), a large one is
  split into 2 children drawn from its own Gaussian, with scales / 1.6, the parent removed;
- respects `max_count`: when densifying every candidate would exceed it, only the candidates with the
  highest gradients are densified (each clone or split adds one Gaussian net).

Densification replaces the Gaussians' parameters (see `CanonicalGaussians`); `remap_adam_state` puts the new
ones into an Adam optimiser and moves its moment estimates along with the rows (new rows start with zero
moments), so the trainer keeps one optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from avatar.model.gaussians import PARAMETER_NAMES, CanonicalGaussians, RowChange, inverse_sigmoid
from avatar.model.rigid import quat_to_rotmat

SPLIT_CHILDREN = 2
SPLIT_SCALE_DIVISOR = 1.6  # 0.8 * SPLIT_CHILDREN, as in the reference implementation
ADAM_STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


@dataclass
class DensifyState:
    """Screen-space gradient statistics per Gaussian since the last densification."""

    grad_norm_sum: Tensor  # [N] float32, sum over visible views of |d loss / d means2d|
    visits: Tensor  # [N] int64, views in which the Gaussian was visible

    @staticmethod
    def zeros(num: int, device: torch.device | str | None = None) -> DensifyState:
        return DensifyState(
            grad_norm_sum=torch.zeros(num, device=device),
            visits=torch.zeros(num, dtype=torch.int64, device=device),
        )

    @property
    def num(self) -> int:
        return self.grad_norm_sum.shape[0]

    @torch.no_grad()
    def accumulate(
        self, means2d_grad: Tensor, visible: Tensor, image_size: tuple[int, int] | None = None
    ) -> None:
        """Adds one view.

        Args:
            means2d_grad: Tensor  # [N, 2] gradient w.r.t. the projected means (`RenderOutput.means2d.grad`)
            visible: Tensor  # [N] bool, e.g. `radii > 0`
            image_size: (width, height) to measure gradients in normalised device coordinates (x and y times
                width / 2 and height / 2), the units of the reference threshold 0.0002; None keeps pixels
        """
        if means2d_grad.shape != (self.num, 2) or visible.shape != (self.num,):
            raise ValueError(
                f"expected means2d_grad [{self.num}, 2] and visible [{self.num}], got "
                f"{list(means2d_grad.shape)} and {list(visible.shape)}"
            )
        grad = means2d_grad.detach().float()
        if image_size is not None:
            width, height = image_size
            grad = grad * grad.new_tensor([width / 2, height / 2])
        visible = visible.bool()
        self.grad_norm_sum += torch.where(visible, grad.norm(dim=-1), 0.0)
        self.visits += visible.long()

    def mean_grad(self) -> Tensor:
        """[N] mean gradient norm over the views that saw each Gaussian (0 if none did)."""
        return self.grad_norm_sum / self.visits.clamp_min(1)

    def reset(self, num: int | None = None) -> None:
        """Zeroes the statistics, resized to `num` Gaussians (default: unchanged)."""
        num = self.num if num is None else num
        self.grad_norm_sum = self.grad_norm_sum.new_zeros(num)
        self.visits = self.visits.new_zeros(num)


@dataclass(frozen=True)
class DensifyResult:
    """What `densify_and_prune` did; `change` is what `remap_adam_state` needs."""

    change: RowChange  # old rows kept (not pruned, not split), then the clones, then the split children
    num_cloned: int
    num_split: int  # parents; each became SPLIT_CHILDREN children
    num_pruned: int

    @property
    def num_added(self) -> int:
        return self.change.num_added


@torch.no_grad()
def densify_and_prune(
    gaussians: CanonicalGaussians,
    state: DensifyState,
    *,
    grad_threshold: float,
    scale_threshold: float,
    min_opacity: float,
    max_count: int,
    extent: float,
    prune_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> DensifyResult:
    """Clones, splits and prunes `gaussians` (module docstring; its parameters are replaced, see
    `remap_adam_state`) and resets `state` to the new count.

    Args:
        grad_threshold: mean screen-space gradient norm at which a Gaussian is densified (units of `state`)
        scale_threshold: fraction of `extent`; larger Gaussians are split, the others cloned
        min_opacity: Gaussians below it are pruned
        max_count: the most Gaussians to have after this step (never pruned down to it)
        extent: size of the scene in metres (e.g. the radius of the head, ~0.15)
        prune_scale: when given, Gaussians whose largest scale exceeds prune_scale * extent are pruned too
        generator: random numbers of the split children's positions (on the Gaussians' device)
    """
    if state.num != gaussians.num:
        raise ValueError(f"the densify state has {state.num} rows, there are {gaussians.num} Gaussians")
    activated = gaussians.activated()
    largest_scale = activated.scales.amax(-1)  # [N]
    prune = activated.opacities < min_opacity
    if prune_scale is not None:
        prune |= largest_scale > prune_scale * extent
    mean_grad = state.mean_grad()
    candidates = (mean_grad >= grad_threshold) & ~prune
    budget = max(max_count - (gaussians.num - int(prune.sum())), 0)
    if int(candidates.sum()) > budget:
        ranked = torch.where(candidates, mean_grad, -1.0)
        chosen = torch.topk(ranked, budget).indices if budget > 0 else ranked.new_zeros(0, dtype=torch.int64)
        candidates = torch.zeros_like(candidates)
        candidates[chosen] = True
    clone = candidates & (largest_scale <= scale_threshold * extent)
    split = candidates & ~clone

    raw = gaussians.parameters_by_name()
    clones = {name: raw[name][clone] for name in PARAMETER_NAMES}
    children = {name: raw[name][split].repeat_interleave(SPLIT_CHILDREN, dim=0) for name in PARAMETER_NAMES}
    parent_scales = activated.scales[split].repeat_interleave(SPLIT_CHILDREN, dim=0)  # [S * 2, 3]
    parent_rotations = quat_to_rotmat(activated.quats[split]).repeat_interleave(SPLIT_CHILDREN, dim=0)
    noise = torch.randn(parent_scales.shape, generator=generator, device=parent_scales.device)
    children["means"] = children["means"] + torch.einsum(
        "nij,nj->ni", parent_rotations, noise * parent_scales
    )
    children["log_scales"] = torch.log(parent_scales / SPLIT_SCALE_DIVISOR)
    added = {name: torch.cat([clones[name], children[name]]) for name in PARAMETER_NAMES}

    num_added = int(clone.sum()) + SPLIT_CHILDREN * int(split.sum())
    change = gaussians.change_rows(RowChange(kept=~prune & ~split, num_added=num_added), added)
    state.reset(gaussians.num)
    return DensifyResult(
        change=change, num_cloned=int(clone.sum()), num_split=int(split.sum()), num_pruned=int(prune.sum())
    )


@torch.no_grad()
def reset_opacity(
    gaussians: CanonicalGaussians, max_opacity: float = 0.01, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Caps every opacity at `max_opacity` (the reference's periodic reset) and zeroes the opacity logits'
    Adam moments in `optimizer`, if given."""
    cap = inverse_sigmoid(torch.tensor(max_opacity)).item()
    gaussians.opacity_logits.clamp_(max=cap)
    if optimizer is not None:
        state = optimizer.state.get(gaussians.opacity_logits, {})
        for key in ADAM_STATE_KEYS:
            if key in state:
                state[key].zero_()


def remap_adam_state(optimizer: torch.optim.Optimizer, change: RowChange) -> None:
    """Puts the parameters that `change` created in place of those it replaced, in `optimizer`'s parameter
    groups, and moves Adam's per-row moments (`exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`) with the rows: kept
    rows keep their moments, new rows start at zero, the step count is unchanged. Parameters the optimiser
    does not hold are skipped; so is the state of parameters not yet stepped."""
    if not change.replaced:
        raise ValueError("the row change replaced no parameters (make it with CanonicalGaussians' methods)")
    for old, new in change.replaced:
        for group in optimizer.param_groups:
            group["params"] = [new if param is old else param for param in group["params"]]
        state = optimizer.state.pop(old, None)
        if not state:
            continue
        for key in ADAM_STATE_KEYS:
            if key in state:
                if state[key].shape[0] != change.num_before:
                    raise ValueError(
                        f"optimizer state {key} has {state[key].shape[0]} rows, the change is for {change.num_before}"
                    )
                state[key] = change.apply(state[key])
        optimizer.state[new] = state
