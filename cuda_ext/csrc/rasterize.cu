// Launchers of the rasterization kernels (rasterize.cuh), one instantiation per supported feature count.
#include <string>

#include "launch_utils.cuh"
#include "launchers.h"
#include "rasterize.cuh"

namespace avatar_cuda {

namespace {

template <int F>
void launch_forward(int width, int height, const float* means2d, const float* conics, const float* opacities,
                    const float* features, const float* background, const int32_t* tile_offsets,
                    const int32_t* gaussian_ids, float* out_features, float* out_alphas, int32_t* last_entries,
                    cudaStream_t stream) {
    const dim3 tiles((width + kTileSize - 1) / kTileSize, (height + kTileSize - 1) / kTileSize);
    const dim3 threads(kTileSize, kTileSize);
    rasterize_forward_kernel<F><<<tiles, threads, 0, stream>>>(
        width, height, static_cast<int>(tiles.x), means2d, conics, opacities, features, background, tile_offsets,
        gaussian_ids, out_features, out_alphas, last_entries);
    check_launch("rasterize_forward_kernel");
}

template <int F>
void launch_backward(int width, int height, const float* means2d, const float* conics, const float* opacities,
                     const float* features, const float* background, const int32_t* tile_offsets,
                     const int32_t* gaussian_ids, const float* out_alphas, const int32_t* last_entries,
                     const float* v_out_features, const float* v_out_alphas, float* v_means2d, float* v_conics,
                     float* v_opacities, float* v_features, cudaStream_t stream) {
    const dim3 tiles((width + kTileSize - 1) / kTileSize, (height + kTileSize - 1) / kTileSize);
    const dim3 threads(kTileSize, kTileSize);
    rasterize_backward_kernel<F><<<tiles, threads, 0, stream>>>(
        width, height, static_cast<int>(tiles.x), means2d, conics, opacities, features, background, tile_offsets,
        gaussian_ids, out_alphas, last_entries, v_out_features, v_out_alphas, v_means2d, v_conics, v_opacities,
        v_features);
    check_launch("rasterize_backward_kernel");
}

[[noreturn]] void unsupported(int num_features) {
    throw std::runtime_error("rasterize: no kernel for " + std::to_string(num_features) +
                             " features (pad to one of rasterize_feature_counts())");
}

}  // namespace

#define AVATAR_FOR_EACH_FEATURE_COUNT(CASE) \
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(8) CASE(16) CASE(32) CASE(64)

std::vector<int> rasterize_feature_counts() {
#define AVATAR_LIST_CASE(F) F,
    return {AVATAR_FOR_EACH_FEATURE_COUNT(AVATAR_LIST_CASE)};
#undef AVATAR_LIST_CASE
}

void rasterize_forward(int num_features, int width, int height, const float* means2d, const float* conics,
                       const float* opacities, const float* features, const float* background,
                       const int32_t* tile_offsets, const int32_t* gaussian_ids, float* out_features,
                       float* out_alphas, int32_t* last_entries, void* stream) {
    if (width == 0 || height == 0) {
        return;
    }
    switch (num_features) {
#define AVATAR_FORWARD_CASE(F)                                                                                \
    case F:                                                                                                   \
        launch_forward<F>(width, height, means2d, conics, opacities, features, background, tile_offsets,      \
                          gaussian_ids, out_features, out_alphas, last_entries, as_stream(stream));           \
        return;
        AVATAR_FOR_EACH_FEATURE_COUNT(AVATAR_FORWARD_CASE)
#undef AVATAR_FORWARD_CASE
        default:
            unsupported(num_features);
    }
}

void rasterize_backward(int num_features, int width, int height, const float* means2d, const float* conics,
                        const float* opacities, const float* features, const float* background,
                        const int32_t* tile_offsets, const int32_t* gaussian_ids, const float* out_alphas,
                        const int32_t* last_entries, const float* v_out_features, const float* v_out_alphas,
                        float* v_means2d, float* v_conics, float* v_opacities, float* v_features, void* stream) {
    if (width == 0 || height == 0) {
        return;
    }
    switch (num_features) {
#define AVATAR_BACKWARD_CASE(F)                                                                               \
    case F:                                                                                                   \
        launch_backward<F>(width, height, means2d, conics, opacities, features, background, tile_offsets,     \
                           gaussian_ids, out_alphas, last_entries, v_out_features, v_out_alphas, v_means2d,   \
                           v_conics, v_opacities, v_features, as_stream(stream));                             \
        return;
        AVATAR_FOR_EACH_FEATURE_COUNT(AVATAR_BACKWARD_CASE)
#undef AVATAR_BACKWARD_CASE
        default:
            unsupported(num_features);
    }
}

}  // namespace avatar_cuda
