"""What every rasterizer backend takes (`RasterizeInputs`) and returns (`RenderOutput`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor


@dataclass(frozen=True)
class RasterizeInputs:
    """One call of avatar.render.rasterize, checked; the conventions are in its docstring."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4]
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    colors: Tensor  # [N, C]
    viewmat: Tensor  # [4, 4]
    K: Tensor  # [3, 3]
    width: int
    height: int
    background: Tensor | None  # [C] or [H, W, C]
    near_plane: float
    far_plane: float
    eps2d: float

    @property
    def arguments(self) -> tuple:
        """Every field, in order: the positional arguments of cuda_ext.rasterize.rasterize_cuda."""
        return tuple(getattr(self, field.name) for field in fields(self))

    @property
    def tensors(self) -> tuple[Tensor | None, ...]:
        """The tensors, in cuda_ext.rasterize.inputs_unsupported_reason's order."""
        return (
            self.means,
            self.quats,
            self.scales,
            self.opacities,
            self.colors,
            self.viewmat,
            self.K,
            self.background,
        )

    def check_shapes(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (self.means, (n, 3)),
            "quats": (self.quats, (n, 4)),
            "scales": (self.scales, (n, 3)),
            "opacities": (self.opacities, (n,)),
            "viewmat": (self.viewmat, (4, 4)),
            "K": (self.K, (3, 3)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        if self.colors.ndim != 2 or self.colors.shape[0] != n:
            raise ValueError(f"colors has shape {tuple(self.colors.shape)}, expected ({n}, C)")
        channels, background = self.colors.shape[1], self.background
        if background is not None and tuple(background.shape) not in (
            (channels,),
            (self.height, self.width, channels),
        ):
            expected_text = f"({channels},) or ({self.height}, {self.width}, {channels})"
            raise ValueError(f"background has shape {tuple(background.shape)}, expected {expected_text}")


@dataclass(frozen=True)
class RenderOutput:
    """A rendered view; `means2d` is the projected-means tensor the image was computed from."""

    rgb: Tensor  # [H, W, C] composited over the background when one is given
    alpha: Tensor  # [H, W, 1] 1 - final transmittance
    depth: Tensor  # [H, W, 1] sum of weight * camera z, not divided by alpha (0 where nothing is drawn)
    radii: Tensor  # [N] int32 screen radius in pixels, 0 for Gaussians culled in this view
    means2d: Tensor  # [N, 2] call .retain_grad() before backward to read screen-space position gradients
