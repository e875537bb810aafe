"""Binning of screen-space Gaussians into square tiles: one entry per (tile, Gaussian) overlap, sorted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

TILE_SIZE = 16


@dataclass(frozen=True)
class TileBins:
    """The Gaussians overlapping each tile, front to back; tile t = row * tiles_x + col."""

    gaussian_ids: Tensor  # [M] int64, sorted by tile, then by depth (ties by Gaussian index)
    tile_ids: Tensor  # [M] int64, non-decreasing
    offsets: Tensor  # [tiles_y * tiles_x + 1] int64: tile t's entries are offsets[t] : offsets[t + 1]
    tiles_x: int
    tiles_y: int
    tile_size: int

    @property
    def counts(self) -> Tensor:
        """Number of Gaussians per tile [tiles_y * tiles_x]."""
        return self.offsets[1:] - self.offsets[:-1]


def alpha_half_extents(cov2d: Tensor, opacities: Tensor, alpha_min: float) -> Tensor:
    """Half-widths [N, 2] (x, y) in pixels of the region where opacity * exp(-sigma) >= alpha_min.

    That region is the ellipse d^T cov2d^-1 d <= 2 ln(opacity / alpha_min), whose bounding box has the
    half-widths s sqrt(cov_xx), s sqrt(cov_yy) with s^2 = 2 ln(opacity / alpha_min). Outside it a Gaussian
    adds nothing to any pixel, so tiles beyond it can be dropped without changing the image. The margin
    covers rounding in the alpha test.
    """
    ratio = (opacities / alpha_min).clamp(min=1.0)
    sigmas = torch.sqrt(2.0 * torch.log(ratio)) * (1.0 + 1e-4) + 1e-4
    std = torch.sqrt(torch.diagonal(cov2d, dim1=-2, dim2=-1).clamp(min=0))
    return sigmas[:, None] * std


@torch.no_grad()
def bin_gaussians(
    means2d: Tensor,  # [N, 2]
    radii: Tensor,  # [N] int, 0 for culled
    depths: Tensor,  # [N]
    width: int,
    height: int,
    *,
    tile_size: int = TILE_SIZE,
    half_extents: Tensor | None = None,  # [N, 2] optional tighter (x, y) half-widths, see alpha_half_extents
) -> TileBins:
    """List, for every tile, the Gaussians whose square [mean - radius, mean + radius] overlaps it.

    As in gsplat's isect_tiles, Gaussian n covers tile columns floor((x - r) / tile_size) up to but excluding
    ceil((x + r) / tile_size), clamped to the image (likewise for rows); with `half_extents` the square
    shrinks to mean -/+ min(radius, half_extents) per axis. Entries are sorted by tile then depth with one
    int64 key: tile * N + depth rank, the rank from a stable argsort of the full-precision depths.
    """
    n = means2d.shape[0]
    device = means2d.device
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    extent = radii.to(means2d.dtype)[:, None].expand(n, 2)
    if half_extents is not None:
        extent = torch.minimum(extent, half_extents.to(means2d.dtype))
    limits = torch.tensor([tiles_x, tiles_y], device=device)
    tile_min = torch.floor((means2d - extent) / tile_size).long().clamp(min=0)
    tile_min = torch.minimum(tile_min, limits)
    tile_max = torch.ceil((means2d + extent) / tile_size).long().clamp(min=0)
    tile_max = torch.minimum(tile_max, limits)
    span = (tile_max - tile_min).clamp(min=0)
    tiles_per_gaussian = span[:, 0] * span[:, 1] * (radii > 0)

    num_entries = int(tiles_per_gaussian.sum())
    gaussian_of_entry = torch.repeat_interleave(torch.arange(n, device=device), tiles_per_gaussian)
    first_entry = torch.cumsum(tiles_per_gaussian, 0) - tiles_per_gaussian
    local = torch.arange(num_entries, device=device) - first_entry[gaussian_of_entry]
    span_x = span[gaussian_of_entry, 0]
    tile_col = tile_min[gaussian_of_entry, 0] + local % span_x
    tile_row = tile_min[gaussian_of_entry, 1] + local // span_x
    tile_of_entry = tile_row * tiles_x + tile_col

    depth_rank = torch.empty(n, dtype=torch.long, device=device)
    depth_rank[torch.argsort(depths, stable=True)] = torch.arange(n, device=device)
    keys = tile_of_entry * n + depth_rank[gaussian_of_entry]
    order = torch.argsort(keys)

    num_tiles = tiles_x * tiles_y
    tile_ids = tile_of_entry[order]
    counts = torch.bincount(tile_ids, minlength=num_tiles)
    offsets = torch.zeros(num_tiles + 1, dtype=torch.long, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    return TileBins(
        gaussian_ids=gaussian_of_entry[order],
        tile_ids=tile_ids,
        offsets=offsets,
        tiles_x=tiles_x,
        tiles_y=tiles_y,
        tile_size=tile_size,
    )
