// Host entry points of the kernels: raw pointers in, kernels enqueued on `stream` (a cudaStream_t passed as
// void*). Plain C++ with no torch and no CUDA header, so bindings.cpp compiles with the host compiler alone.
// Every function throws std::runtime_error when a kernel launch fails. Shapes are in the kernel headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace avatar_cuda {

// projection.cu
void project_gaussians_forward(int n, const float* means, const float* quats, const float* scales,
                               const float* viewmat, const float* K, int width, int height, float near_plane,
                               float far_plane, float eps2d, float* means2d, float* conics, float* depths,
                               int32_t* radii, float* cov2d, void* stream);

void project_gaussians_backward(int n, const float* means, const float* quats, const float* scales,
                                const float* viewmat, const float* K, int width, int height, float eps2d,
                                const int32_t* radii, const float* v_means2d, const float* v_conics,
                                const float* v_depths, float* v_means, float* v_quats, float* v_scales,
                                float* v_viewmat_rows, void* stream);

// tiles.cu
void count_tiles(int n, const float* means2d, const int32_t* radii, const float* cov2d, const float* opacities,
                 int tiles_x, int tiles_y, int32_t* tiles_per_gaussian, void* stream);

void write_tile_keys(int n, const float* means2d, const int32_t* radii, const float* cov2d,
                     const float* opacities, const float* depths, const int64_t* entries_end, int tiles_x,
                     int tiles_y, uint64_t* keys, int32_t* gaussian_ids, void* stream);

// Bytes of scratch that sort_tile_keys needs for m entries.
std::size_t sort_tile_keys_temp_bytes(int m, int end_bit);

// Stable radix sort of (key, Gaussian id) pairs on key bits [0, end_bit).
void sort_tile_keys(void* temp, std::size_t temp_bytes, const uint64_t* keys_in, uint64_t* keys_out,
                    const int32_t* ids_in, int32_t* ids_out, int m, int end_bit, void* stream);

// offsets[t] = first sorted entry of tile t, offsets[num_tiles] = m (m > 0).
void tile_offsets(int m, int num_tiles, const uint64_t* sorted_keys, int32_t* offsets, void* stream);

// rasterize.cu
// Feature counts with a compiled kernel, ascending; callers pad features with zeros to one of them.
std::vector<int> rasterize_feature_counts();

void rasterize_forward(int num_features, int width, int height, const float* means2d, const float* conics,
                       const float* opacities, const float* features, const float* background,
                       const int32_t* tile_offsets, const int32_t* gaussian_ids, float* out_features,
                       float* out_alphas, int32_t* last_entries, void* stream);

void rasterize_backward(int num_features, int width, int height, const float* means2d, const float* conics,
                        const float* opacities, const float* features, const float* background,
                        const int32_t* tile_offsets, const int32_t* gaussian_ids, const float* out_alphas,
                        const int32_t* last_entries, const float* v_out_features, const float* v_out_alphas,
                        float* v_means2d, float* v_conics, float* v_opacities, float* v_features, void* stream);

// hash_grid.cu: float32 or float64 (`double_precision`) positions, parameters and gradients.
void hash_grid_forward(bool double_precision, int features_per_level, int64_t n, int n_levels,
                       const void* positions, const void* params, const double* level_scales,
                       const int64_t* level_info, int interpolation, void* features, void* stream);

void hash_grid_backward_params(bool double_precision, int features_per_level, int64_t n, int n_levels,
                               const void* positions, const double* level_scales, const int64_t* level_info,
                               int interpolation, const void* grad_features, void* grad_params, void* stream);

void hash_grid_backward_positions(bool double_precision, int features_per_level, int64_t n, int n_levels,
                                  const void* positions, const void* params, const double* level_scales,
                                  const int64_t* level_info, int interpolation, const void* grad_features,
                                  void* grad_positions, void* stream);

}  // namespace avatar_cuda
