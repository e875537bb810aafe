// Per-tile front-to-back compositing of binned screen-space Gaussians, forward and backward, with the constants
// of avatar/render/rasterize_torch.py (the original 3DGS kernel's): one 16x16 thread block per tile, one thread
// per pixel, Gaussians staged through shared memory in batches of 256.
//
//   sigma = 0.5 (a dx^2 + c dy^2) + b dx dy        (dx, dy) = mean - pixel centre, conic (a, b, c)
//   alpha = min(ALPHA_MAX, opacity exp(-sigma));   skipped when alpha < ALPHA_MIN
//   stop before the first Gaussian that would make T (1 - alpha) < TRANSMITTANCE_MIN
//   out += alpha T feature;  T *= 1 - alpha;  out += T background at the end;  alpha_out = 1 - T
//
// The backward pass visits each pixel's Gaussians back to front from its last contributing entry, recovering
// the transmittance before each one by dividing by (1 - alpha), as 3DGS and gsplat do.
#pragma once

#include "common.cuh"

namespace avatar_cuda {

template <int F>
__global__ void __launch_bounds__(kTileThreads) rasterize_forward_kernel(
    int width, int height, int tiles_x,
    const float* __restrict__ means2d,         // [N, 2]
    const float* __restrict__ conics,          // [N, 3]
    const float* __restrict__ opacities,       // [N]
    const float* __restrict__ features,        // [N, F]
    const float* __restrict__ background,      // [F] or nullptr
    const int32_t* __restrict__ tile_offsets,  // [tiles_y * tiles_x + 1]
    const int32_t* __restrict__ gaussian_ids,  // [M] sorted by tile, then depth
    float* __restrict__ out_features,          // [H, W, F]
    float* __restrict__ out_alphas,            // [H, W]
    int32_t* __restrict__ last_entries         // [H, W] index into gaussian_ids of the last contributor, or -1
) {
    const int tile = blockIdx.y * tiles_x + blockIdx.x;
    const int rank = threadIdx.y * kTileSize + threadIdx.x;
    const int col = blockIdx.x * kTileSize + threadIdx.x;
    const int row = blockIdx.y * kTileSize + threadIdx.y;
    const bool inside = col < width && row < height;
    const float px = static_cast<float>(col) + 0.5f;
    const float py = static_cast<float>(row) + 0.5f;

    __shared__ int32_t batch_ids[kTileThreads];
    __shared__ float batch_means[2 * kTileThreads];
    __shared__ float batch_conics[3 * kTileThreads];
    __shared__ float batch_opacities[kTileThreads];

    const int range_start = tile_offsets[tile];
    const int range_end = tile_offsets[tile + 1];
    float T = 1.f;
    float accumulated[F];
#pragma unroll
    for (int k = 0; k < F; ++k) {
        accumulated[k] = 0.f;
    }
    int last_entry = -1;
    bool done = !inside;

    for (int batch_start = range_start; batch_start < range_end; batch_start += kTileThreads) {
        // Also the barrier between the previous batch's reads and this batch's writes.
        if (__syncthreads_count(done) == kTileThreads) {
            break;
        }
        const int entry = batch_start + rank;
        if (entry < range_end) {
            const int32_t g = gaussian_ids[entry];
            batch_ids[rank] = g;
            batch_means[2 * rank] = means2d[2 * g];
            batch_means[2 * rank + 1] = means2d[2 * g + 1];
            batch_conics[3 * rank] = conics[3 * g];
            batch_conics[3 * rank + 1] = conics[3 * g + 1];
            batch_conics[3 * rank + 2] = conics[3 * g + 2];
            batch_opacities[rank] = opacities[g];
        }
        __syncthreads();
        const int batch_size = min(kTileThreads, range_end - batch_start);
        for (int j = 0; !done && j < batch_size; ++j) {
            const float dx = batch_means[2 * j] - px;
            const float dy = batch_means[2 * j + 1] - py;
            const float a = batch_conics[3 * j], b = batch_conics[3 * j + 1], c = batch_conics[3 * j + 2];
            const float sigma = 0.5f * (a * dx * dx + c * dy * dy) + b * dx * dy;
            const float alpha = fminf(kAlphaMax, batch_opacities[j] * expf(-sigma));
            if (alpha < kAlphaMin) {
                continue;
            }
            const float next_T = T * (1.f - alpha);
            if (next_T < kTransmittanceMin) {
                done = true;
                break;
            }
            const float weight = alpha * T;
            const float* feature = features + static_cast<int64_t>(batch_ids[j]) * F;
#pragma unroll
            for (int k = 0; k < F; ++k) {
                accumulated[k] += feature[k] * weight;
            }
            last_entry = batch_start + j;
            T = next_T;
        }
    }

    if (inside) {
        const int pix = row * width + col;
#pragma unroll
        for (int k = 0; k < F; ++k) {
            out_features[static_cast<int64_t>(pix) * F + k] =
                background == nullptr ? accumulated[k] : accumulated[k] + T * background[k];
        }
        out_alphas[pix] = 1.f - T;
        last_entries[pix] = last_entry;
    }
}

template <int F>
__global__ void __launch_bounds__(kTileThreads) rasterize_backward_kernel(
    int width, int height, int tiles_x,
    const float* __restrict__ means2d,         // [N, 2]
    const float* __restrict__ conics,          // [N, 3]
    const float* __restrict__ opacities,       // [N]
    const float* __restrict__ features,        // [N, F]
    const float* __restrict__ background,      // [F] or nullptr
    const int32_t* __restrict__ tile_offsets,  // [tiles_y * tiles_x + 1]
    const int32_t* __restrict__ gaussian_ids,  // [M]
    const float* __restrict__ out_alphas,      // [H, W] from the forward pass
    const int32_t* __restrict__ last_entries,  // [H, W] from the forward pass
    const float* __restrict__ v_out_features,  // [H, W, F]
    const float* __restrict__ v_out_alphas,    // [H, W] or nullptr
    float* __restrict__ v_means2d,             // [N, 2] accumulated into
    float* __restrict__ v_conics,              // [N, 3] accumulated into
    float* __restrict__ v_opacities,           // [N] accumulated into
    float* __restrict__ v_features             // [N, F] accumulated into
) {
    const int tile = blockIdx.y * tiles_x + blockIdx.x;
    const int rank = threadIdx.y * kTileSize + threadIdx.x;
    const int lane = rank % kWarpSize;
    const int col = blockIdx.x * kTileSize + threadIdx.x;
    const int row = blockIdx.y * kTileSize + threadIdx.y;
    const bool inside = col < width && row < height;
    const float px = static_cast<float>(col) + 0.5f;
    const float py = static_cast<float>(row) + 0.5f;
    const int pix = inside ? row * width + col : 0;

    __shared__ int32_t batch_ids[kTileThreads];
    __shared__ float batch_means[2 * kTileThreads];
    __shared__ float batch_conics[3 * kTileThreads];
    __shared__ float batch_opacities[kTileThreads];
    __shared__ int block_last_entry;

    const int range_start = tile_offsets[tile];
    const int range_end = tile_offsets[tile + 1];
    const float T_final = inside ? 1.f - out_alphas[pix] : 1.f;
    float T = T_final;
    const int last_entry = inside ? last_entries[pix] : -1;
    const float v_alpha_out = (inside && v_out_alphas != nullptr) ? v_out_alphas[pix] : 0.f;
    float v_color[F];
    float behind[F];  // sum of weight * feature over the contributors behind the current one
    float background_dot = 0.f;
#pragma unroll
    for (int k = 0; k < F; ++k) {
        v_color[k] = inside ? v_out_features[static_cast<int64_t>(pix) * F + k] : 0.f;
        behind[k] = 0.f;
        if (background != nullptr) {
            background_dot += background[k] * v_color[k];
        }
    }

    const int warp_last_entry = warp_max(last_entry);
    if (rank == 0) {
        block_last_entry = -1;
    }
    __syncthreads();
    atomicMax(&block_last_entry, last_entry);
    __syncthreads();
    const int block_last = block_last_entry;

    // Batches from the back; a batch holds entries [batch_end - batch_size + 1, batch_end], slot j = batch_end - j.
    for (int batch_end = range_end - 1; batch_end >= range_start; batch_end -= kTileThreads) {
        const int batch_size = min(kTileThreads, batch_end + 1 - range_start);
        if (batch_end - batch_size + 1 > block_last) {
            continue;  // behind every pixel's last contributor (the same decision in the whole block)
        }
        __syncthreads();  // the previous batch's reads are done
        const int entry = batch_end - rank;
        if (entry >= range_start) {
            const int32_t g = gaussian_ids[entry];
            batch_ids[rank] = g;
            batch_means[2 * rank] = means2d[2 * g];
            batch_means[2 * rank + 1] = means2d[2 * g + 1];
            batch_conics[3 * rank] = conics[3 * g];
            batch_conics[3 * rank + 1] = conics[3 * g + 1];
            batch_conics[3 * rank + 2] = conics[3 * g + 2];
            batch_opacities[rank] = opacities[g];
        }
        __syncthreads();
        // Slots before max(0, batch_end - warp_last_entry) lie behind every last contributor of this warp.
        for (int j = max(0, batch_end - warp_last_entry); j < batch_size; ++j) {
            bool valid = inside && batch_end - j <= last_entry;
            float dx = 0.f, dy = 0.f, a = 0.f, b = 0.f, c = 0.f, opacity = 0.f, vis = 0.f, alpha = 0.f;
            if (valid) {
                dx = batch_means[2 * j] - px;
                dy = batch_means[2 * j + 1] - py;
                a = batch_conics[3 * j];
                b = batch_conics[3 * j + 1];
                c = batch_conics[3 * j + 2];
                const float sigma = 0.5f * (a * dx * dx + c * dy * dy) + b * dx * dy;
                vis = expf(-sigma);
                opacity = batch_opacities[j];
                alpha = fminf(kAlphaMax, opacity * vis);
                valid = alpha >= kAlphaMin;
            }
            if (!__any_sync(kFullWarp, valid)) {
                continue;
            }
            // v_mean2d (2), v_conic (3), v_opacity (1), v_feature (F)
            float grads[6 + F];
#pragma unroll
            for (int k = 0; k < 6 + F; ++k) {
                grads[k] = 0.f;
            }
            if (valid) {
                const float ra = 1.f / (1.f - alpha);
                T *= ra;  // the transmittance in front of this Gaussian
                const float weight = alpha * T;
                const float* feature = features + static_cast<int64_t>(batch_ids[j]) * F;
                float v_alpha = 0.f;
#pragma unroll
                for (int k = 0; k < F; ++k) {
                    grads[6 + k] = weight * v_color[k];
                    v_alpha += (feature[k] * T - behind[k] * ra) * v_color[k];
                }
                v_alpha += T_final * ra * v_alpha_out;
                if (background != nullptr) {
                    v_alpha -= T_final * ra * background_dot;
                }
                if (opacity * vis <= kAlphaMax) {  // the clamp passes no gradient where it is active
                    const float v_sigma = -opacity * vis * v_alpha;
                    grads[0] = v_sigma * (a * dx + b * dy);
                    grads[1] = v_sigma * (b * dx + c * dy);
                    grads[2] = 0.5f * v_sigma * dx * dx;
                    grads[3] = v_sigma * dx * dy;
                    grads[4] = 0.5f * v_sigma * dy * dy;
                    grads[5] = vis * v_alpha;
                }
#pragma unroll
                for (int k = 0; k < F; ++k) {
                    behind[k] += feature[k] * weight;
                }
            }
            warp_sum(grads);
            if (lane == 0) {
                const int64_t g = batch_ids[j];
                atomicAdd(v_means2d + 2 * g, grads[0]);
                atomicAdd(v_means2d + 2 * g + 1, grads[1]);
                atomicAdd(v_conics + 3 * g, grads[2]);
                atomicAdd(v_conics + 3 * g + 1, grads[3]);
                atomicAdd(v_conics + 3 * g + 2, grads[4]);
                atomicAdd(v_opacities + g, grads[5]);
#pragma unroll
                for (int k = 0; k < F; ++k) {
                    atomicAdd(v_features + g * F + k, grads[6 + k]);
                }
            }
        }
    }
}

}  // namespace avatar_cuda
