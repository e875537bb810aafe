"""3D Gaussians: an activated set (what the rasterizer draws) and the raw parameters the optimiser updates.

Activations (raw parameter -> activated value):
    means           -> means                        metres, head frame
    quats           -> quats / |quats|              (w, x, y, z)
    log_scales      -> exp(log_scales)              standard deviations in metres
    opacity_logits  -> sigmoid(opacity_logits)      in (0, 1)
    color_logits    -> sigmoid(color_logits)        RGB in (0, 1); no spherical harmonics

`CanonicalGaussians` changes its number of rows (`keep`, `append`, `change_rows`) by replacing its five
`nn.Parameter`s with new ones (as the reference 3DGS code does; resizing a parameter's `.data` in place would
break autograd for any graph still alive). The returned `RowChange` says how the rows moved and which
parameter replaced which: `avatar.train.densify.remap_adam_state(optimizer, change)` swaps them in an
optimiser and moves its state along, so the trainer keeps one optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PARAMETER_NAMES: tuple[str, ...] = ("means", "quats", "log_scales", "opacity_logits", "color_logits")
LOGIT_EPS = 1e-4  # probabilities are clamped to [eps, 1 - eps] before a logit


def inverse_sigmoid(values: Tensor, eps: float = LOGIT_EPS) -> Tensor:
    """logit(clamp(values, eps, 1 - eps)): the raw value whose sigmoid is `values`."""
    values = values.clamp(eps, 1.0 - eps)
    return torch.log(values / (1.0 - values))


@dataclass(frozen=True)
class GaussianSet:
    """Activated Gaussians, ready for `avatar.render.rasterize`."""

    means: Tensor  # [N, 3] metres
    quats: Tensor  # [N, 4] (w, x, y, z), unit norm
    scales: Tensor  # [N, 3] standard deviations, metres
    opacities: Tensor  # [N] in (0, 1)
    colors: Tensor  # [N, 3] RGB in [0, 1]

    @property
    def num(self) -> int:
        return self.means.shape[0]

    def index(self, rows: Tensor) -> GaussianSet:
        """The Gaussians selected by `rows`: a [N] bool mask or a [M] int64 index."""
        return GaussianSet(
            means=self.means[rows],
            quats=self.quats[rows],
            scales=self.scales[rows],
            opacities=self.opacities[rows],
            colors=self.colors[rows],
        )


@dataclass(frozen=True, eq=False)
class RowChange:
    """How per-Gaussian rows changed: the old rows where `kept` is True, in order, then `num_added` new rows."""

    kept: Tensor  # [N_before] bool
    num_added: int
    replaced: tuple[tuple[nn.Parameter, nn.Parameter], ...] = ()  # (old, new) parameters, once applied

    @property
    def num_before(self) -> int:
        return self.kept.shape[0]

    @property
    def num_after(self) -> int:
        return int(self.kept.sum()) + self.num_added

    def apply(self, rows: Tensor, added: Tensor | None = None) -> Tensor:
        """[N_before, ...] -> [N_after, ...]: the kept rows, then `added` ([num_added, ...]; zeros when None)."""
        if rows.shape[0] != self.num_before:
            raise ValueError(f"expected {self.num_before} rows, got {rows.shape[0]}")
        if added is None:
            added = rows.new_zeros((self.num_added, *rows.shape[1:]))
        elif added.shape[0] != self.num_added:
            raise ValueError(f"expected {self.num_added} added rows, got {added.shape[0]}")
        return torch.cat([rows[self.kept.to(rows.device)], added.to(rows)], dim=0)


class CanonicalGaussians(nn.Module):
    """Raw per-Gaussian parameters in the canonical head frame (see the module docstring for activations)."""

    def __init__(
        self,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4] (w, x, y, z), any norm
        log_scales: Tensor,  # [N, 3]
        opacity_logits: Tensor,  # [N]
        color_logits: Tensor,  # [N, 3]
    ):
        super().__init__()
        n = means.shape[0]
        _check_rows(n, means, quats, log_scales, opacity_logits, color_logits)
        self.means = nn.Parameter(means.detach().clone().float())
        self.quats = nn.Parameter(quats.detach().clone().float())
        self.log_scales = nn.Parameter(log_scales.detach().clone().float())
        self.opacity_logits = nn.Parameter(opacity_logits.detach().clone().float())
        self.color_logits = nn.Parameter(color_logits.detach().clone().float())

    @staticmethod
    def from_activated(gaussians: GaussianSet) -> CanonicalGaussians:
        """Raw parameters whose activation is `gaussians` (opacities and colours clamped away from 0 and 1)."""
        return CanonicalGaussians(
            means=gaussians.means,
            quats=gaussians.quats,
            log_scales=torch.log(gaussians.scales),
            opacity_logits=inverse_sigmoid(gaussians.opacities),
            color_logits=inverse_sigmoid(gaussians.colors),
        )

    @staticmethod
    def empty(num: int, device: torch.device | str | None = None) -> CanonicalGaussians:
        """`num` placeholder Gaussians (identity rotation, unit scale, opacity and colour 0.5), e.g. to load a
        state dict into."""
        quats = torch.zeros(num, 4, device=device)
        quats[:, 0] = 1.0
        return CanonicalGaussians(
            means=torch.zeros(num, 3, device=device),
            quats=quats,
            log_scales=torch.zeros(num, 3, device=device),
            opacity_logits=torch.zeros(num, device=device),
            color_logits=torch.zeros(num, 3, device=device),
        )

    @property
    def num(self) -> int:
        return self.means.shape[0]

    def parameters_by_name(self) -> dict[str, nn.Parameter]:
        """The five parameters by name, in `PARAMETER_NAMES` order (e.g. for per-group learning rates)."""
        return {name: getattr(self, name) for name in PARAMETER_NAMES}

    def activated(self) -> GaussianSet:
        """The activated Gaussians (`means` is the parameter itself)."""
        return GaussianSet(
            means=self.means,
            quats=F.normalize(self.quats, dim=-1),
            scales=torch.exp(self.log_scales),
            opacities=torch.sigmoid(self.opacity_logits),
            colors=torch.sigmoid(self.color_logits),
        )

    @torch.no_grad()
    def set_colors(self, colors: Tensor) -> None:
        """Sets the colours [N, 3] in [0, 1] (clamped away from 0 and 1 so the logits stay finite)."""
        self.color_logits.copy_(inverse_sigmoid(colors.to(self.color_logits)))

    @torch.no_grad()
    def keep(self, mask: Tensor) -> RowChange:
        """Keeps the rows where `mask` [N] bool is True, in order (new parameters, without gradients)."""
        if mask.shape != (self.num,) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a [{self.num}] bool tensor, got {mask.dtype} {list(mask.shape)}")
        return self._change_rows(RowChange(kept=mask.to(self.means.device), num_added=0), {})

    @torch.no_grad()
    def append(
        self,
        means: Tensor,  # [M, 3]
        quats: Tensor,  # [M, 4]
        log_scales: Tensor,  # [M, 3]
        opacity_logits: Tensor,  # [M]
        color_logits: Tensor,  # [M, 3]
    ) -> RowChange:
        """Appends M rows of raw parameters after the existing ones (new parameters, without gradients)."""
        added = dict(zip(PARAMETER_NAMES, (means, quats, log_scales, opacity_logits, color_logits)))
        _check_rows(means.shape[0], *added.values())
        kept = torch.ones(self.num, dtype=torch.bool, device=self.means.device)
        return self._change_rows(RowChange(kept=kept, num_added=means.shape[0]), added)

    @torch.no_grad()
    def change_rows(self, change: RowChange, added: dict[str, Tensor]) -> RowChange:
        """Applies `change` to every parameter; `added` maps each of `PARAMETER_NAMES` to its new rows."""
        if change.num_before != self.num:
            raise ValueError(f"the change is for {change.num_before} rows, there are {self.num}")
        if set(added) != set(PARAMETER_NAMES):
            raise ValueError(f"added rows must be given for exactly {PARAMETER_NAMES}, got {sorted(added)}")
        _check_rows(change.num_added, *(added[name] for name in PARAMETER_NAMES))
        return self._change_rows(change, added)

    def _change_rows(self, change: RowChange, added: dict[str, Tensor]) -> RowChange:
        replaced = []
        for name, old in self.parameters_by_name().items():
            new = nn.Parameter(change.apply(old.detach(), added.get(name)), requires_grad=old.requires_grad)
            setattr(self, name, new)
            replaced.append((old, new))
        return RowChange(kept=change.kept, num_added=change.num_added, replaced=tuple(replaced))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint may hold a different number of Gaussians than this module was built with.
        for name, parameter in self.parameters_by_name().items():
            stored = state_dict.get(prefix + name)
            if (
                stored is not None
                and stored.shape != parameter.shape
                and stored.shape[1:] == parameter.shape[1:]
            ):
                setattr(self, name, nn.Parameter(parameter.detach().new_empty(stored.shape)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"num={self.num}"


def _check_rows(n: int, *tensors: Tensor) -> None:
    trailing = ((3,), (4,), (3,), (), (3,))
    for name, tensor, shape in zip(PARAMETER_NAMES, tensors, trailing):
        if tuple(tensor.shape) != (n, *shape):
            raise ValueError(f"{name} must have shape {[n, *shape]}, got {list(tensor.shape)}")
