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
processed in blocks, and it stops early once every pixel in it has terminated. The backward pass is written
out (the 3DGS kernel's, from the saved alphas and weights) rather than left to autograd.
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
# Exponents are raised to this floor before exp(): its alpha is below ALPHA_MIN, so it is dropped all the same,
# and on the CPU exp() of an exponent that underflows float32 (below about -88) is over ten times slower.
_LOG_ALPHA_FLOOR = -20.0


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


def _block_weights(
    coefficients: Tensor,  # [T, B, 6]
    monomials: Tensor,  # [P, 6]
    transmittance: Tensor,  # [T, 1, P] before the block
) -> tuple[Tensor, Tensor, Tensor]:
    """Alpha, compositing weight [T, B, P] of a block's entries, and the transmittance after each [T, B, P]."""
    exponent = (coefficients @ monomials.T).clamp(min=_LOG_ALPHA_FLOOR)
    alpha = torch.exp(exponent).clamp(max=ALPHA_MAX)
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, 0.0)
    after = transmittance * torch.cumprod(1.0 - alpha, dim=1)
    before = torch.cat([transmittance, after[:, :-1]], dim=1)
    weights = torch.where(after >= TRANSMITTANCE_MIN, before - after, 0.0)
    return alpha, weights, after


class _CompositeChunk(torch.autograd.Function):
    """sum(weight * feature) over the K front-to-back entries of T tiles, with the 3DGS backward pass.

    Autograd through cumprod and the masks took 1.4 times as long on the CPU. With g a pixel's output
    gradient, the backward pass needs, per entry k, the sum S_k of w_j (f_j . g) over the entries j behind
    it: with C . g the whole pixel's sum, S_k = C . g - (the same sum over j <= k). For an entry that draws
    (w_k > 0, alpha below ALPHA_MAX) d(C . g)/d exponent_k = w_k (f_k . g) - alpha_k / (1 - alpha_k) S_k;
    for the others it is 0.
    """

    @staticmethod
    def forward(ctx, coefficients: Tensor, features: Tensor, monomials: Tensor, block_size: int) -> Tensor:
        num_tiles, num_entries, _ = coefficients.shape
        transmittance = coefficients.new_ones(num_tiles, 1, monomials.shape[0])
        accumulated = coefficients.new_zeros(num_tiles, monomials.shape[0], features.shape[2])
        alphas, weights = [], []
        for start in range(0, num_entries, block_size):
            stop = min(start + block_size, num_entries)
            alpha, weight, after = _block_weights(coefficients[:, start:stop], monomials, transmittance)
            accumulated += weight.transpose(1, 2) @ features[:, start:stop]
            alphas.append(alpha)
            weights.append(weight)
            transmittance = after[:, -1:]
            if stop < num_entries and not bool((transmittance >= TRANSMITTANCE_MIN).any()):
                break
        ctx.block_size = block_size
        ctx.save_for_backward(features, monomials, accumulated, *alphas, *weights)
        return accumulated

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        features, monomials, accumulated, *saved = ctx.saved_tensors
        alphas, weights = saved[: len(saved) // 2], saved[len(saved) // 2 :]
        grad_coefficients = features.new_zeros(*features.shape[:2], 6)
        grad_features = torch.zeros_like(features)
        behind = (accumulated * grad).sum(-1)[:, None]  # [T, 1, P] sum of w_j (f_j . g) behind the front
        grad_t = grad.transpose(1, 2)  # [T, F, P]
        for index, (alpha, weight) in enumerate(zip(alphas, weights, strict=True)):
            start = index * ctx.block_size
            stop = start + alpha.shape[1]
            grad_features[:, start:stop] = weight @ grad
            drawn = weight * (features[:, start:stop] @ grad_t)  # w_k (f_k . g)
            behind_each = behind - torch.cumsum(drawn, dim=1)
            behind = behind_each[:, -1:]
            grad_exponent = drawn - alpha / (1.0 - alpha) * behind_each
            grad_exponent = torch.where((weight > 0) & (alpha < ALPHA_MAX), grad_exponent, 0.0)
            grad_coefficients[:, start:stop] = grad_exponent @ monomials
        return grad_coefficients, grad_features, None, None


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
            _CompositeChunk.apply(coefficients[entries], entry_features[entries], monomials, block_size)
        )
        rendered_tiles.append(tiles)

    image = features.new_zeros(num_tiles, pixels_per_tile, num_features + 1)
    if rendered:
        image = image.index_copy(0, torch.cat(rendered_tiles), torch.cat(rendered))
    image = image.reshape(bins.tiles_y, bins.tiles_x, tile_size, tile_size, num_features + 1)
    image = image.permute(0, 2, 1, 3, 4).reshape(bins.tiles_y * tile_size, bins.tiles_x * tile_size, -1)
    image = image[:height, :width]
    return image[..., :num_features], image[..., num_features:]
