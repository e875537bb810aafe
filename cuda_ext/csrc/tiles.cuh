// Tile intersection: one 64-bit key per (tile, Gaussian) overlap, tile id in the high 32 bits and the depth as
// an order-preserving uint32 in the low 32 bits, so one radix sort orders the entries by tile, then depth (the
// sort is stable and keys are written in Gaussian order, so equal depths keep Gaussian order, as the stable
// argsort of avatar/render/tiles.py does). Mirrors bin_gaussians with alpha_half_extents.
#pragma once

#include "common.cuh"

namespace avatar_cuda {

// The tile rectangle [x0, x1) x [y0, y1) that a Gaussian's trimmed square covers; false when it covers none.
struct TileRect {
    int x0, y0, x1, y1;
};

// As bin_gaussians(radii * (opacities >= ALPHA_MIN), half_extents=alpha_half_extents(cov2d, opacities)).
__device__ __forceinline__ bool tile_rect(const float* __restrict__ means2d,  // [N, 2]
                                          const int32_t* __restrict__ radii,  // [N]
                                          const float* __restrict__ cov2d,    // [N, 3] (a, b, c)
                                          const float* __restrict__ opacities, int i, int tiles_x, int tiles_y,
                                          TileRect& rect) {
    const float opacity = opacities[i];
    if (radii[i] <= 0 || !(opacity >= kAlphaMin)) {
        return false;
    }
    // Half-widths of the region where opacity * exp(-sigma) >= ALPHA_MIN, capped at the radius.
    const float ratio = fmaxf(opacity / kAlphaMin, 1.f);
    const float sigmas = sqrtf(2.f * logf(ratio)) * 1.0001f + 1e-4f;
    const float radius = static_cast<float>(radii[i]);
    const float extent_x = fminf(radius, sigmas * sqrtf(fmaxf(cov2d[3 * i], 0.f)));
    const float extent_y = fminf(radius, sigmas * sqrtf(fmaxf(cov2d[3 * i + 2], 0.f)));
    const float size = static_cast<float>(kTileSize);
    const float mx = means2d[2 * i], my = means2d[2 * i + 1];
    // Clamped while still float so that far-off values never overflow the int conversion.
    const float limit_x = static_cast<float>(tiles_x), limit_y = static_cast<float>(tiles_y);
    rect.x0 = static_cast<int>(fminf(fmaxf(floorf((mx - extent_x) / size), 0.f), limit_x));
    rect.y0 = static_cast<int>(fminf(fmaxf(floorf((my - extent_y) / size), 0.f), limit_y));
    rect.x1 = static_cast<int>(fminf(fmaxf(ceilf((mx + extent_x) / size), 0.f), limit_x));
    rect.y1 = static_cast<int>(fminf(fmaxf(ceilf((my + extent_y) / size), 0.f), limit_y));
    return rect.x1 > rect.x0 && rect.y1 > rect.y0;
}

__global__ void count_tiles_kernel(int n,
                                   const float* __restrict__ means2d,    // [N, 2]
                                   const int32_t* __restrict__ radii,    // [N]
                                   const float* __restrict__ cov2d,      // [N, 3]
                                   const float* __restrict__ opacities,  // [N]
                                   int tiles_x, int tiles_y,
                                   int32_t* __restrict__ tiles_per_gaussian  // [N]
) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    TileRect rect;
    const bool covers = tile_rect(means2d, radii, cov2d, opacities, i, tiles_x, tiles_y, rect);
    tiles_per_gaussian[i] = covers ? (rect.x1 - rect.x0) * (rect.y1 - rect.y0) : 0;
}

// Order-preserving map of float32 to uint32: a < b (as floats) iff key(a) < key(b) (as unsigned).
__device__ __forceinline__ uint32_t ordered_float_bits(float value) {
    const uint32_t bits = __float_as_uint(value);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__global__ void write_tile_keys_kernel(int n,
                                       const float* __restrict__ means2d,         // [N, 2]
                                       const int32_t* __restrict__ radii,         // [N]
                                       const float* __restrict__ cov2d,           // [N, 3]
                                       const float* __restrict__ opacities,       // [N]
                                       const float* __restrict__ depths,          // [N]
                                       const int64_t* __restrict__ entries_end,   // [N] inclusive cumsum of counts
                                       int tiles_x, int tiles_y,
                                       uint64_t* __restrict__ keys,              // [M]
                                       int32_t* __restrict__ gaussian_ids        // [M]
) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    TileRect rect;
    if (!tile_rect(means2d, radii, cov2d, opacities, i, tiles_x, tiles_y, rect)) {
        return;
    }
    // The slot count_tiles_kernel sized; the bound keeps the writes inside it even if a toolkit evaluated
    // tile_rect's arithmetic differently in the two kernels.
    int64_t entry = i == 0 ? 0 : entries_end[i - 1];
    const int64_t end = entries_end[i];
    const uint64_t depth_bits = ordered_float_bits(depths[i]);
    for (int row = rect.y0; row < rect.y1 && entry < end; ++row) {
        for (int col = rect.x0; col < rect.x1 && entry < end; ++col) {
            const uint64_t tile = static_cast<uint64_t>(row) * tiles_x + col;
            keys[entry] = (tile << 32) | depth_bits;
            gaussian_ids[entry] = i;
            ++entry;
        }
    }
}

// offsets[t] = index of the first sorted entry whose tile is >= t, for t in [0, num_tiles]; needs m > 0 (the
// caller zero-fills the offsets when there are no entries).
__global__ void tile_offsets_kernel(int m, int num_tiles,
                                    const uint64_t* __restrict__ sorted_keys,  // [M]
                                    int32_t* __restrict__ offsets              // [num_tiles + 1]
) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= m) {
        return;
    }
    const int tile = static_cast<int>(sorted_keys[e] >> 32);
    const int previous_tile = e == 0 ? -1 : static_cast<int>(sorted_keys[e - 1] >> 32);
    for (int t = previous_tile + 1; t <= tile; ++t) {
        offsets[t] = e;
    }
    if (e == m - 1) {
        for (int t = tile + 1; t <= num_tiles; ++t) {
            offsets[t] = m;
        }
    }
}

}  // namespace avatar_cuda
