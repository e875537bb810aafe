// Launchers of the tile-intersection kernels (tiles.cuh) and the radix sort of their keys.
#include <cub/device/device_radix_sort.cuh>

#include "launch_utils.cuh"
#include "launchers.h"
#include "tiles.cuh"

namespace avatar_cuda {

void count_tiles(int n, const float* means2d, const int32_t* radii, const float* cov2d, const float* opacities,
                 int tiles_x, int tiles_y, int32_t* tiles_per_gaussian, void* stream) {
    if (n == 0) {
        return;
    }
    count_tiles_kernel<<<blocks_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        n, means2d, radii, cov2d, opacities, tiles_x, tiles_y, tiles_per_gaussian);
    check_launch("count_tiles_kernel");
}

void write_tile_keys(int n, const float* means2d, const int32_t* radii, const float* cov2d,
                     const float* opacities, const float* depths, const int64_t* entries_end, int tiles_x,
                     int tiles_y, uint64_t* keys, int32_t* gaussian_ids, void* stream) {
    if (n == 0) {
        return;
    }
    write_tile_keys_kernel<<<blocks_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        n, means2d, radii, cov2d, opacities, depths, entries_end, tiles_x, tiles_y, keys, gaussian_ids);
    check_launch("write_tile_keys_kernel");
}

std::size_t sort_tile_keys_temp_bytes(int m, int end_bit) {
    std::size_t bytes = 0;
    const cudaError_t status = cub::DeviceRadixSort::SortPairs(
        nullptr, bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
        static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), m, 0, end_bit);
    if (status != cudaSuccess) {
        throw std::runtime_error(std::string("cub::DeviceRadixSort::SortPairs (size query) failed: ") +
                                 cudaGetErrorString(status));
    }
    return bytes;
}

void sort_tile_keys(void* temp, std::size_t temp_bytes, const uint64_t* keys_in, uint64_t* keys_out,
                    const int32_t* ids_in, int32_t* ids_out, int m, int end_bit, void* stream) {
    const cudaError_t status = cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, ids_in,
                                                               ids_out, m, 0, end_bit, as_stream(stream));
    if (status != cudaSuccess) {
        throw std::runtime_error(std::string("cub::DeviceRadixSort::SortPairs failed: ") +
                                 cudaGetErrorString(status));
    }
}

void tile_offsets(int m, int num_tiles, const uint64_t* sorted_keys, int32_t* offsets, void* stream) {
    if (m == 0) {
        return;
    }
    tile_offsets_kernel<<<blocks_for(m), kThreadsPerBlock, 0, as_stream(stream)>>>(m, num_tiles, sorted_keys,
                                                                                    offsets);
    check_launch("tile_offsets_kernel");
}

}  // namespace avatar_cuda
