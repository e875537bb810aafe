// Launchers of the hash-grid kernels (hash_grid.cuh) for float32 and float64, F = 1, 2, 4 or 8.
#include <string>

#include "hash_grid.cuh"
#include "launch_utils.cuh"
#include "launchers.h"

namespace avatar_cuda {

namespace {

template <typename scalar_t, int F>
void launch_forward(int64_t n, int n_levels, const void* positions, const void* params,
                    const double* level_scales, const int64_t* level_info, int interpolation, void* features,
                    cudaStream_t stream) {
    const dim3 blocks(blocks_for(n), n_levels);
    hash_grid_forward_kernel<scalar_t, F><<<blocks, kThreadsPerBlock, 0, stream>>>(
        n, n_levels, static_cast<const scalar_t*>(positions), static_cast<const scalar_t*>(params), level_scales,
        level_info, interpolation, static_cast<scalar_t*>(features));
    check_launch("hash_grid_forward_kernel");
}

template <typename scalar_t, int F>
void launch_backward_params(int64_t n, int n_levels, const void* positions, const double* level_scales,
                            const int64_t* level_info, int interpolation, const void* grad_features,
                            void* grad_params, cudaStream_t stream) {
    const dim3 blocks(blocks_for(n), n_levels);
    hash_grid_backward_params_kernel<scalar_t, F><<<blocks, kThreadsPerBlock, 0, stream>>>(
        n, n_levels, static_cast<const scalar_t*>(positions), level_scales, level_info, interpolation,
        static_cast<const scalar_t*>(grad_features), static_cast<scalar_t*>(grad_params));
    check_launch("hash_grid_backward_params_kernel");
}

template <typename scalar_t, int F>
void launch_backward_positions(int64_t n, int n_levels, const void* positions, const void* params,
                               const double* level_scales, const int64_t* level_info, int interpolation,
                               const void* grad_features, void* grad_positions, cudaStream_t stream) {
    hash_grid_backward_positions_kernel<scalar_t, F><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
        n, n_levels, static_cast<const scalar_t*>(positions), static_cast<const scalar_t*>(params), level_scales,
        level_info, interpolation, static_cast<const scalar_t*>(grad_features),
        static_cast<scalar_t*>(grad_positions));
    check_launch("hash_grid_backward_positions_kernel");
}

[[noreturn]] void unsupported(int features_per_level) {
    throw std::runtime_error("hash grid: no kernel for " + std::to_string(features_per_level) +
                             " features per level (1, 2, 4 or 8)");
}

}  // namespace

// Calls LAUNCH<scalar_t, F>(...) for the runtime dtype and feature count.
#define AVATAR_HASH_GRID_DISPATCH(LAUNCH, ...)                 \
    switch (features_per_level) {                              \
        case 1:                                                \
            AVATAR_HASH_GRID_DTYPE(LAUNCH, 1, __VA_ARGS__)     \
        case 2:                                                \
            AVATAR_HASH_GRID_DTYPE(LAUNCH, 2, __VA_ARGS__)     \
        case 4:                                                \
            AVATAR_HASH_GRID_DTYPE(LAUNCH, 4, __VA_ARGS__)     \
        case 8:                                                \
            AVATAR_HASH_GRID_DTYPE(LAUNCH, 8, __VA_ARGS__)     \
        default:                                               \
            unsupported(features_per_level);                   \
    }

#define AVATAR_HASH_GRID_DTYPE(LAUNCH, F, ...) \
    if (double_precision) {                    \
        LAUNCH<double, F>(__VA_ARGS__);        \
    } else {                                   \
        LAUNCH<float, F>(__VA_ARGS__);         \
    }                                          \
    return;

void hash_grid_forward(bool double_precision, int features_per_level, int64_t n, int n_levels,
                       const void* positions, const void* params, const double* level_scales,
                       const int64_t* level_info, int interpolation, void* features, void* stream) {
    if (n == 0) {
        return;
    }
    AVATAR_HASH_GRID_DISPATCH(launch_forward, n, n_levels, positions, params, level_scales, level_info,
                              interpolation, features, as_stream(stream))
}

void hash_grid_backward_params(bool double_precision, int features_per_level, int64_t n, int n_levels,
                               const void* positions, const double* level_scales, const int64_t* level_info,
                               int interpolation, const void* grad_features, void* grad_params, void* stream) {
    if (n == 0) {
        return;
    }
    AVATAR_HASH_GRID_DISPATCH(launch_backward_params, n, n_levels, positions, level_scales, level_info,
                              interpolation, grad_features, grad_params, as_stream(stream))
}

void hash_grid_backward_positions(bool double_precision, int features_per_level, int64_t n, int n_levels,
                                  const void* positions, const void* params, const double* level_scales,
                                  const int64_t* level_info, int interpolation, const void* grad_features,
                                  void* grad_positions, void* stream) {
    if (n == 0) {
        return;
    }
    AVATAR_HASH_GRID_DISPATCH(launch_backward_positions, n, n_levels, positions, params, level_scales,
                              level_info, interpolation, grad_features, grad_positions, as_stream(stream))
}

#undef AVATAR_HASH_GRID_DTYPE
#undef AVATAR_HASH_GRID_DISPATCH

}  // namespace avatar_cuda
