"""Front-to-back alpha compositing of binned screen-space Gaussians in plain, autograd-differentiable PyTorch.

Per pixel, the Gaussians of its tile are visited front to back with the constants of the reference 3DGS
kernel:

    sigma = 0.5 * (a dx^2 + c dy^2) + b dx dy      (dx, dy) = pixel centre - mean, conic (a, b, c)
    alpha = min(ALPHA_MAX, opacity * exp(-sigma));  skipped when alpha < ALPHA_MIN
    T'    = T * (1 - alpha);  the pixel stops before the first Gaussian that would make T' < TRANSMITTANCE_MIN
    out  += alpha * T * feature;  T = T'

The conic is gsplat's: the inverse 2D covariance [[a, b], [b, c]] stored as (a, b, c). gsplat's kernel uses
ALPHA_MAX = 0.999 and stops when T' <= 1e-4; this module follows the original 3DGS kernel (0.99, T' < 1e-4).

Tensor layout: each chunk of tiles is a [tiles, gaussians, pixels] block (every tile's list padded to the
longest in the chunk; tiles are grouped by list length so padding is small), so memory grows with
pixels x overlapping Gaussians, never pixels x all Gaussians. The exponent log(opacity) - sigma is a
quadratic in the tile-local pixel position (u, v), so it is one matrix product of per-pixel monomials
[u^2, u v, v^2, u, v, 1] with six per-(tile, Gaussian) coefficients. Along the depth axis a chunk is
processed in blocks, and it stops early once every pixel in it has terminated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avatar.render.tiles import TileBins

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
# Exponent for padding entries: exp() of it is 0 in float32 and float64.
_PAD_LOG_ALPHA = -1e4


def _pixel_monomials(tile_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Monomials [u^2, u v, v^2, u, v, 1] of pixel centres relative to the tile centre [tile_size^2, 6]."""
    offsets = torch.arange(tile_size, dtype=dtype, device=device) + 0.5 - 0.5 * tile_size
    v, u = torch.meshgrid(offsets, offsets, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)


def _exponent_coefficients(
    means2d: Tensor,  # [M, 2] mean of each entry's Gaussian
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    tile_centres: Tensor,  # [M, 2] centre of each entry's tile
) -> Tensor:
    """Coefficients [M, 6] with log(opacity) - sigma(u, v) = coefficients . [u^2, u v, v^2, u, v, 1]."""
    a, b, c = conics.unbind(-1)
    mx, my = (means2d - tile_centres).unbind(-1)
    sigma_at_centre = 0.5 * a * mx * mx + b * mx * my + 0.5 * c * my * my
    # log of a clamped opacity keeps exp() exact and the gradient finite at opacity 0 (it is 0 there).
    log_opacity = torch.log(opacities.clamp(min=torch.finfo(opacities.dtype).tiny))
    return torch.stack(
        [-0.5 * a, -b, -0.5 * c, a * mx + b * my, b * mx + c * my, log_opacity - sigma_at_centre], dim=-1
    )


def _composite_chunk(
    coefficients: Tensor,  # [T, K, 6]
    features: Tensor,  # [T, K, F]
    monomials: Tensor,  # [P, 6]
    block_size: int,
) -> Tensor:
    """Composite the K front-to-back entries of T tiles; returns sum(weight * feature) [T, P, F]."""
    num_tiles, num_entries, _ = coefficients.shape
    transmittance = coefficients.new_ones(num_tiles, 1, monomials.shape[0])
    accumulated = None
    for start in range(0, num_entries, block_size):
        stop = min(start + block_size, num_entries)
        alpha = torch.exp(coefficients[:, start:stop] @ monomials.T).clamp(max=ALPHA_MAX)  # [T, B, P]
        alpha = torch.where(alpha >= ALPHA_MIN, alpha, 0.0)
        after = transmittance * torch.cumprod(1.0 - alpha, dim=1)  # T after each entry
        before = torch.cat([transmittance, after[:, :-1]], dim=1)
        weights = torch.where(after >= TRANSMITTANCE_MIN, before - after, 0.0)
        contribution = weights.transpose(1, 2) @ features[:, start:stop]
        accumulated = contribution if accumulated is None else accumulated + contribution
        transmittance = after[:, -1:]
        if stop < num_entries and not bool((transmittance >= TRANSMITTANCE_MIN).any()):
            break
    return accumulated


def _chunks(counts: Tensor, max_elements: int, pixels_per_tile: int) -> list[tuple[Tensor, int]]:
    """Group the non-empty tiles, longest lists first, into chunks of at most ~max_elements padded triples.

    Returns (tile ids, longest list in the chunk) per chunk.
    """
    order = torch.argsort(counts, descending=True)
    order = order[counts[order] > 0]
    sorted_counts = counts[order].tolist()
    chunks = []
    start = 0
    while start < len(sorted_counts):
        longest = sorted_counts[start]
        stop = min(len(sorted_counts), start + max(1, max_elements // (longest * pixels_per_tile)))
        chunks.append((order[start:stop], longest))
        start = stop
    return chunks


def rasterize_to_pixels_torch(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    features: Tensor,  # [N, F] colours or any per-Gaussian features
    bins: TileBins,
    width: int,
    height: int,
    *,
    max_chunk_elements: int = 1 << 19,
    block_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Composite binned Gaussians front to back; returns (sum of weight * feature [H, W, F], alpha [H, W, 1]).

    alpha = 1 - final transmittance = sum of the weights. No background is added. `max_chunk_elements`
    bounds the (tile, Gaussian, pixel) triples held at once per chunk (the autograd graph still keeps each
    chunk's intermediates until backward), `block_size` is the depth block between early-termination checks.
    """
    dtype, device = means2d.dtype, means2d.device
    tile_size = bins.tile_size
    pixels_per_tile = tile_size * tile_size
    num_tiles = bins.tiles_x * bins.tiles_y
    num_features = features.shape[1]
    gaussian_ids = bins.gaussian_ids
    tile_ids = bins.tile_ids

    tile_centres = torch.stack(
        [
            (tile_ids % bins.tiles_x).to(dtype),
            torch.div(tile_ids, bins.tiles_x, rounding_mode="floor").to(dtype),
        ],
        dim=-1,
    )
    tile_centres = (tile_centres + 0.5) * tile_size
    coefficients = _exponent_coefficients(
        means2d[gaussian_ids], conics[gaussian_ids], opacities[gaussian_ids], tile_centres
    )
    pad_coefficients = coefficients.new_zeros(1, 6)
    pad_coefficients[0, 5] = _PAD_LOG_ALPHA
    coefficients = torch.cat([coefficients, pad_coefficients])  # entry M is the padding entry
    # An extra all-ones feature accumulates alpha in the same matrix product.
    entry_features = torch.cat([features, features.new_ones(features.shape[0], 1)], dim=1)[gaussian_ids]
    entry_features = torch.cat([entry_features, entry_features.new_zeros(1, num_features + 1)])

    monomials = _pixel_monomials(tile_size, dtype, device)
    counts = bins.counts
    pad_index = gaussian_ids.shape[0]
    rendered_tiles, rendered = [], []
    for tiles, longest in _chunks(counts, max_chunk_elements, pixels_per_tile):
        rank = torch.arange(longest, device=device)
        entries = bins.offsets[tiles][:, None] + rank
        entries = torch.where(rank < counts[tiles][:, None], entries, torch.full_like(entries, pad_index))
        rendered.append(
            _composite_chunk(coefficients[entries], entry_features[entries], monomials, block_size)
        )
        rendered_tiles.append(tiles)

    image = features.new_zeros(num_tiles, pixels_per_tile, num_features + 1)
    if rendered:
        image = image.index_copy(0, torch.cat(rendered_tiles), torch.cat(rendered))
    image = image.reshape(bins.tiles_y, bins.tiles_x, tile_size, tile_size, num_features + 1)
    image = image.permute(0, 2, 1, 3, 4).reshape(bins.tiles_y * tile_size, bins.tiles_x * tile_size, -1)
    image = image[:height, :width]
    return image[..., :num_features], image[..., num_features:]
