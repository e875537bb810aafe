// Launchers of the projection kernels (projection.cuh).
#include "launch_utils.cuh"
#include "launchers.h"
#include "projection.cuh"

namespace avatar_cuda {

void project_gaussians_forward(int n, const float* means, const float* quats, const float* scales,
                               const float* viewmat, const float* K, int width, int height, float near_plane,
                               float far_plane, float eps2d, float* means2d, float* conics, float* depths,
                               int32_t* radii, float* cov2d, void* stream) {
    if (n == 0) {
        return;
    }
    project_gaussians_forward_kernel<<<blocks_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        n, means, quats, scales, viewmat, K, width, height, near_plane, far_plane, eps2d, means2d, conics, depths,
        radii, cov2d);
    check_launch("project_gaussians_forward_kernel");
}

void project_gaussians_backward(int n, const float* means, const float* quats, const float* scales,
                                const float* viewmat, const float* K, int width, int height, float eps2d,
                                const int32_t* radii, const float* v_means2d, const float* v_conics,
                                const float* v_depths, float* v_means, float* v_quats, float* v_scales,
                                float* v_viewmat_rows, void* stream) {
    if (n == 0) {
        return;
    }
    project_gaussians_backward_kernel<<<blocks_for(n), kThreadsPerBlock, 0, as_stream(stream)>>>(
        n, means, quats, scales, viewmat, K, width, height, eps2d, radii, v_means2d, v_conics, v_depths, v_means,
        v_quats, v_scales, v_viewmat_rows);
    check_launch("project_gaussians_backward_kernel");
}

}  // namespace avatar_cuda
