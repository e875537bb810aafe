"""What a rasterizer backend returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class RenderOutput:
    """A rendered view; `means2d` is the projected-means tensor the image was computed from."""

    rgb: Tensor  # [H, W, C] composited over the background when one is given
    alpha: Tensor  # [H, W, 1] 1 - final transmittance
    depth: Tensor  # [H, W, 1] sum of weight * camera z, not divided by alpha (0 where nothing is drawn)
    radii: Tensor  # [N] int32 screen radius in pixels, 0 for Gaussians culled in this view
    means2d: Tensor  # [N, 2] call .retain_grad() before backward to read screen-space position gradients
