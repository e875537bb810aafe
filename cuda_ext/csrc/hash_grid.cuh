// Multi-resolution hash-grid encoding of 3D positions, forward and backward, with the layout, hashing and
// arithmetic of avatar/model/encoding/hash_grid.py (tiny-cuda-nn's): per level l, grid coordinate
// p = fmaf(scale_l, x, 0.5) (float32; float64 multiplies and adds with two roundings), cell = floor(p),
// t = p - cell; corner c = cell + (c & 1, c >> 1 & 1, c >> 2 & 1) reads row
//     dense:  (x + y res + z res^2) mod 2^32 mod table_size
//     hashed: (x ^ y 2654435761 ^ z 805459861) mod 2^32 mod table_size
// of the level's table, params[(offset_l + row) * F + f]; corner weights are (w_x w_y) w_z.
// Positions arrive clamped to [0, 1] and in the parameters' dtype (the Python wrapper does both).
#pragma once

#include "common.cuh"

namespace avatar_cuda {

// The order of INTERPOLATIONS in hash_grid.py.
enum HashGridInterpolation : int { kNearest = 0, kLinear = 1, kSmoothstep = 2 };

constexpr uint32_t kHashPrimeY = 2654435761u;
constexpr uint32_t kHashPrimeZ = 805459861u;

struct HashGridLevel {
    double scale;         // a float32 value
    uint32_t resolution;  // vertices per axis
    uint32_t table_size;  // rows
    int64_t offset;       // first row in the flat table
    bool hashed;
};

// level_info rows are (resolution, table_size, offset, hashed), as hash_grid.py's HashGridLevel.
__device__ __forceinline__ HashGridLevel load_level(const double* __restrict__ level_scales,  // [L]
                                                    const int64_t* __restrict__ level_info,  // [L, 4]
                                                    int level) {
    HashGridLevel result;
    result.scale = level_scales[level];
    result.resolution = static_cast<uint32_t>(level_info[4 * level]);
    result.table_size = static_cast<uint32_t>(level_info[4 * level + 1]);
    result.offset = level_info[4 * level + 2];
    result.hashed = level_info[4 * level + 3] != 0;
    return result;
}

__device__ __forceinline__ float grid_coordinate(float x, double scale) {
    return __fmaf_rn(static_cast<float>(scale), x, 0.5f);
}

__device__ __forceinline__ double grid_coordinate(double x, double scale) {
    return __dadd_rn(__dmul_rn(scale, x), 0.5);
}

__device__ __forceinline__ float floor_of(float value) { return floorf(value); }
__device__ __forceinline__ double floor_of(double value) { return floor(value); }

// A position's cell in one level, the per-axis weights of the low and high corner and their derivatives
// w.r.t. the grid coordinate.
template <typename scalar_t>
struct GridCell {
    uint32_t cell[3];
    scalar_t weight[3][2];
    scalar_t slope[3][2];
};

template <typename scalar_t>
__device__ __forceinline__ GridCell<scalar_t> locate(const scalar_t* __restrict__ position, double scale,
                                                     int interpolation) {
    GridCell<scalar_t> result;
    for (int d = 0; d < 3; ++d) {
        const scalar_t grid = grid_coordinate(position[d], scale);
        const scalar_t cell = floor_of(grid);
        const scalar_t t = grid - cell;
        result.cell[d] = static_cast<uint32_t>(cell);
        scalar_t high, slope;
        if (interpolation == kLinear) {
            high = t;
            slope = scalar_t(1);
        } else if (interpolation == kSmoothstep) {
            high = t * t * (scalar_t(3) - scalar_t(2) * t);
            slope = scalar_t(6) * t * (scalar_t(1) - t);
        } else {  // nearest: corner 0 only, constant in the position
            high = scalar_t(0);
            slope = scalar_t(0);
        }
        result.weight[d][0] = scalar_t(1) - high;
        result.weight[d][1] = high;
        result.slope[d][0] = -slope;
        result.slope[d][1] = slope;
    }
    return result;
}

// Row of the level's table read by corner `corner` (0..7) of `cell`.
__device__ __forceinline__ uint32_t corner_row(const uint32_t* cell, int corner, const HashGridLevel& level) {
    const uint32_t x = cell[0] + (corner & 1);
    const uint32_t y = cell[1] + ((corner >> 1) & 1);
    const uint32_t z = cell[2] + ((corner >> 2) & 1);
    const uint32_t index = level.hashed ? (x ^ (y * kHashPrimeY) ^ (z * kHashPrimeZ))
                                        : (x + y * level.resolution + z * (level.resolution * level.resolution));
    return index % level.table_size;
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t corner_weight(const GridCell<scalar_t>& cell, int corner) {
    return cell.weight[0][corner & 1] * cell.weight[1][(corner >> 1) & 1] * cell.weight[2][(corner >> 2) & 1];
}

// One thread per (position, level): blockIdx.y is the level.
template <typename scalar_t, int F>
__global__ void hash_grid_forward_kernel(int64_t n, int n_levels,
                                         const scalar_t* __restrict__ positions,  // [N, 3]
                                         const scalar_t* __restrict__ params,     // [P]
                                         const double* __restrict__ level_scales,  // [L]
                                         const int64_t* __restrict__ level_info,   // [L, 4]
                                         int interpolation,
                                         scalar_t* __restrict__ features  // [N, L * F]
) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int l = blockIdx.y;
    if (i >= n) {
        return;
    }
    const HashGridLevel level = load_level(level_scales, level_info, l);
    const GridCell<scalar_t> cell = locate(positions + 3 * i, level.scale, interpolation);
    scalar_t accumulated[F];
#pragma unroll
    for (int f = 0; f < F; ++f) {
        accumulated[f] = scalar_t(0);
    }
    const int corners = interpolation == kNearest ? 1 : 8;
    for (int corner = 0; corner < corners; ++corner) {
        const scalar_t weight = corner_weight(cell, corner);
        const scalar_t* value = params + (level.offset + corner_row(cell.cell, corner, level)) * F;
#pragma unroll
        for (int f = 0; f < F; ++f) {
            accumulated[f] += weight * value[f];
        }
    }
    scalar_t* out = features + i * n_levels * F + l * F;
#pragma unroll
    for (int f = 0; f < F; ++f) {
        out[f] = accumulated[f];
    }
}

// Gradient w.r.t. the parameters, accumulated with atomicAdd; one thread per (position, level).
template <typename scalar_t, int F>
__global__ void hash_grid_backward_params_kernel(int64_t n, int n_levels,
                                                 const scalar_t* __restrict__ positions,       // [N, 3]
                                                 const double* __restrict__ level_scales,      // [L]
                                                 const int64_t* __restrict__ level_info,       // [L, 4]
                                                 int interpolation,
                                                 const scalar_t* __restrict__ grad_features,  // [N, L * F]
                                                 scalar_t* __restrict__ grad_params           // [P]
) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int l = blockIdx.y;
    if (i >= n) {
        return;
    }
    const HashGridLevel level = load_level(level_scales, level_info, l);
    const GridCell<scalar_t> cell = locate(positions + 3 * i, level.scale, interpolation);
    const scalar_t* grad = grad_features + i * n_levels * F + l * F;
    const int corners = interpolation == kNearest ? 1 : 8;
    for (int corner = 0; corner < corners; ++corner) {
        const scalar_t weight = corner_weight(cell, corner);
        scalar_t* target = grad_params + (level.offset + corner_row(cell.cell, corner, level)) * F;
#pragma unroll
        for (int f = 0; f < F; ++f) {
            atomicAdd(target + f, weight * grad[f]);
        }
    }
}

// Gradient w.r.t. the (clamped) positions; one thread per position looping over the levels.
template <typename scalar_t, int F>
__global__ void hash_grid_backward_positions_kernel(int64_t n, int n_levels,
                                                    const scalar_t* __restrict__ positions,       // [N, 3]
                                                    const scalar_t* __restrict__ params,          // [P]
                                                    const double* __restrict__ level_scales,      // [L]
                                                    const int64_t* __restrict__ level_info,       // [L, 4]
                                                    int interpolation,
                                                    const scalar_t* __restrict__ grad_features,  // [N, L * F]
                                                    scalar_t* __restrict__ grad_positions         // [N, 3]
) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    scalar_t total[3] = {scalar_t(0), scalar_t(0), scalar_t(0)};
    for (int l = 0; interpolation != kNearest && l < n_levels; ++l) {
        const HashGridLevel level = load_level(level_scales, level_info, l);
        const GridCell<scalar_t> cell = locate(positions + 3 * i, level.scale, interpolation);
        const scalar_t* grad = grad_features + i * n_levels * F + l * F;
        scalar_t along[3] = {scalar_t(0), scalar_t(0), scalar_t(0)};
        for (int corner = 0; corner < 8; ++corner) {
            const scalar_t* value = params + (level.offset + corner_row(cell.cell, corner, level)) * F;
            scalar_t dot = scalar_t(0);
#pragma unroll
            for (int f = 0; f < F; ++f) {
                dot += value[f] * grad[f];
            }
            const int bx = corner & 1, by = (corner >> 1) & 1, bz = (corner >> 2) & 1;
            const scalar_t wx = cell.weight[0][bx], wy = cell.weight[1][by], wz = cell.weight[2][bz];
            along[0] += dot * cell.slope[0][bx] * wy * wz;
            along[1] += dot * wx * cell.slope[1][by] * wz;
            along[2] += dot * wx * wy * cell.slope[2][bz];
        }
        const scalar_t scale = static_cast<scalar_t>(level.scale);
        for (int d = 0; d < 3; ++d) {
            total[d] += scale * along[d];
        }
    }
    for (int d = 0; d < 3; ++d) {
        grad_positions[3 * i + d] = total[d];
    }
}

}  // namespace avatar_cuda
