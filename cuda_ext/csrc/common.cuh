// Constants and warp helpers shared by the kernels. Like every .cuh here it includes neither torch nor a CUDA
// header: nvcc provides the CUDA built-ins, and tests/cuda_emulator.cpp provides CPU stand-ins for them.
#pragma once

#include <cstdint>

namespace avatar_cuda {

// The conventions of avatar/render (tiles.py, rasterize_torch.py); float32 values of the Python constants.
constexpr int kTileSize = 16;
constexpr int kTileThreads = kTileSize * kTileSize;  // one thread per pixel; also Gaussians per shared batch
constexpr float kAlphaMax = 0.99f;
constexpr float kAlphaMin = static_cast<float>(1.0 / 255.0);
constexpr float kTransmittanceMin = 1e-4f;
constexpr unsigned kFullWarp = 0xffffffffu;
constexpr int kWarpSize = 32;

// Sums each of K values over the 32 lanes of a warp; lane 0 holds the totals. Every lane must call it.
template <int K>
__device__ __forceinline__ void warp_sum(float (&values)[K]) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            values[k] += __shfl_down_sync(kFullWarp, values[k], offset);
        }
    }
}

// The largest value over the 32 lanes of a warp, in every lane. Every lane must call it.
__device__ __forceinline__ int warp_max(int value) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        value = max(value, __shfl_xor_sync(kFullWarp, value, offset));
    }
    return value;
}

}  // namespace avatar_cuda
