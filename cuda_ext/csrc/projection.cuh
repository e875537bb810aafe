// EWA projection of 3D Gaussians to screen-space 2D Gaussians, forward and backward, one thread per Gaussian.
// Mirrors avatar/render/projection.py step for step (same operation order where rounding could matter); the
// backward pass is the chain rule through those steps in reverse.
#pragma once

#include "common.cuh"

namespace avatar_cuda {

// Row-major 3x3 products: C = A B, C = A B^T, C = A^T B.
__device__ __forceinline__ void mat3_mul(const float* A, const float* B, float* C) {
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) {
            C[3 * r + c] = A[3 * r] * B[c] + A[3 * r + 1] * B[3 + c] + A[3 * r + 2] * B[6 + c];
        }
    }
}

__device__ __forceinline__ void mat3_mul_bt(const float* A, const float* B, float* C) {
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) {
            C[3 * r + c] = A[3 * r] * B[3 * c] + A[3 * r + 1] * B[3 * c + 1] + A[3 * r + 2] * B[3 * c + 2];
        }
    }
}

__device__ __forceinline__ void mat3_mul_at(const float* A, const float* B, float* C) {
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) {
            C[3 * r + c] = A[r] * B[c] + A[3 + r] * B[3 + c] + A[6 + r] * B[6 + c];
        }
    }
}

// The camera of project_gaussians: world -> camera rotation and translation, intrinsics, and the limits of
// x/z and y/z (image extent plus 30 % of the half field of view on each side) applied before the Jacobian.
struct PinholeCamera {
    float R[9];  // viewmat[:3, :3], row-major
    float t[3];  // viewmat[:3, 3]
    float fx, fy, cx, cy;
    float lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg;
};

__device__ __forceinline__ PinholeCamera load_camera(const float* __restrict__ viewmat,  // [4, 4] row-major
                                                     const float* __restrict__ K,        // [3, 3] row-major
                                                     int width, int height) {
    PinholeCamera cam;
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) {
            cam.R[3 * r + c] = viewmat[4 * r + c];
        }
        cam.t[r] = viewmat[4 * r + 3];
    }
    cam.fx = K[0];
    cam.fy = K[4];
    cam.cx = K[2];
    cam.cy = K[5];
    const float w = static_cast<float>(width);
    const float h = static_cast<float>(height);
    cam.lim_x_pos = (w - cam.cx) / cam.fx + 0.3f * ((0.5f * w) / cam.fx);
    cam.lim_x_neg = cam.cx / cam.fx + 0.3f * ((0.5f * w) / cam.fx);
    cam.lim_y_pos = (h - cam.cy) / cam.fy + 0.3f * ((0.5f * h) / cam.fy);
    cam.lim_y_neg = cam.cy / cam.fy + 0.3f * ((0.5f * h) / cam.fy);
    return cam;
}

// Every intermediate of one Gaussian's projection that the backward pass needs.
struct GaussianProjection {
    float mean_c[3];   // camera-space mean
    float q_norm;      // |q|
    float qn[4];       // q / |q|, (w, x, y, z)
    float rot[9];      // R(qn)
    float M[9];        // R(qn) diag(scale)
    float covar[9];    // world covariance M M^T
    float covar_c[9];  // camera covariance R covar R^T
    float ratio_x, ratio_y;          // x/z and y/z after clamping to the limits
    bool unclamped_x, unclamped_y;   // whether the clamp left x/z (y/z) unchanged
    float tx, ty;                    // z * clamped ratio
    float J[6];                      // Jacobian [[J0, J1, J2], [J3, J4, J5]] (J1 = J3 = 0)
    float cov2d[3];                  // (a, b, c) of [[a, b], [b, c]], eps2d included
    float mean2d[2];
};

// Camera-space mean of a world point.
__device__ __forceinline__ void world_to_camera(const PinholeCamera& cam, const float* m, float* mean_c) {
    for (int r = 0; r < 3; ++r) {
        mean_c[r] = (cam.R[3 * r] * m[0] + cam.R[3 * r + 1] * m[1] + cam.R[3 * r + 2] * m[2]) + cam.t[r];
    }
}

// Rotation matrix (row-major) of a unit quaternion (w, x, y, z), as quat_to_rotmat in projection.py.
__device__ __forceinline__ void quat_to_rotmat(const float* q, float* R) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1.f - 2.f * (y * y + z * z);
    R[1] = 2.f * (x * y - w * z);
    R[2] = 2.f * (x * z + w * y);
    R[3] = 2.f * (x * y + w * z);
    R[4] = 1.f - 2.f * (x * x + z * z);
    R[5] = 2.f * (y * z - w * x);
    R[6] = 2.f * (x * z - w * y);
    R[7] = 2.f * (y * z + w * x);
    R[8] = 1.f - 2.f * (x * x + y * y);
}

// Gradient w.r.t. the unit quaternion (w, x, y, z) of <v_R, R(q)>.
__device__ __forceinline__ void quat_to_rotmat_vjp(const float* q, const float* v_R, float* v_q) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    v_q[0] = 2.f * (-z * v_R[1] + y * v_R[2] + z * v_R[3] - x * v_R[5] - y * v_R[6] + x * v_R[7]);
    v_q[1] = 2.f * (y * v_R[1] + z * v_R[2] + y * v_R[3] - 2.f * x * v_R[4] - w * v_R[5] + z * v_R[6] +
                    w * v_R[7] - 2.f * x * v_R[8]);
    v_q[2] = 2.f * (-2.f * y * v_R[0] + x * v_R[1] + w * v_R[2] + x * v_R[3] + z * v_R[5] - w * v_R[6] +
                    z * v_R[7] - 2.f * y * v_R[8]);
    v_q[3] = 2.f * (-2.f * z * v_R[0] - w * v_R[1] + x * v_R[2] + w * v_R[3] - 2.f * z * v_R[4] +
                    y * v_R[5] + x * v_R[6] + y * v_R[7]);
}

// The forward computation of project_gaussians for one Gaussian in depth range (z > 0).
__device__ __forceinline__ void project_gaussian(const PinholeCamera& cam, const float* mean_c, const float* quat,
                                                 const float* scale, float eps2d, GaussianProjection& p) {
    for (int r = 0; r < 3; ++r) {
        p.mean_c[r] = mean_c[r];
    }
    p.q_norm = sqrtf(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
    for (int k = 0; k < 4; ++k) {
        p.qn[k] = quat[k] / p.q_norm;
    }
    quat_to_rotmat(p.qn, p.rot);
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) {
            p.M[3 * r + c] = p.rot[3 * r + c] * scale[c];
        }
    }
    mat3_mul_bt(p.M, p.M, p.covar);
    float tmp[9];
    mat3_mul(cam.R, p.covar, tmp);
    mat3_mul_bt(tmp, cam.R, p.covar_c);

    const float x = mean_c[0], y = mean_c[1], z = mean_c[2];
    const float raw_x = x / z, raw_y = y / z;
    p.ratio_x = fminf(fmaxf(raw_x, -cam.lim_x_neg), cam.lim_x_pos);
    p.ratio_y = fminf(fmaxf(raw_y, -cam.lim_y_neg), cam.lim_y_pos);
    p.unclamped_x = (raw_x > -cam.lim_x_neg) && (raw_x < cam.lim_x_pos);
    p.unclamped_y = (raw_y > -cam.lim_y_neg) && (raw_y < cam.lim_y_pos);
    p.tx = z * p.ratio_x;
    p.ty = z * p.ratio_y;
    const float z2 = z * z;
    p.J[0] = cam.fx / z;
    p.J[1] = 0.f;
    p.J[2] = -cam.fx * p.tx / z2;
    p.J[3] = 0.f;
    p.J[4] = cam.fy / z;
    p.J[5] = -cam.fy * p.ty / z2;

    // cov2d = J covar_c J^T + eps2d I, with the off-diagonal averaged as in projection.py.
    float JS[6];
    for (int r = 0; r < 2; ++r) {
        for (int c = 0; c < 3; ++c) {
            JS[3 * r + c] = p.J[3 * r] * p.covar_c[c] + p.J[3 * r + 1] * p.covar_c[3 + c] +
                            p.J[3 * r + 2] * p.covar_c[6 + c];
        }
    }
    const float c00 = JS[0] * p.J[0] + JS[1] * p.J[1] + JS[2] * p.J[2];
    const float c01 = JS[0] * p.J[3] + JS[1] * p.J[4] + JS[2] * p.J[5];
    const float c10 = JS[3] * p.J[0] + JS[4] * p.J[1] + JS[5] * p.J[2];
    const float c11 = JS[3] * p.J[3] + JS[4] * p.J[4] + JS[5] * p.J[5];
    p.cov2d[0] = c00 + eps2d;
    p.cov2d[1] = 0.5f * (c01 + c10);
    p.cov2d[2] = c11 + eps2d;
    p.mean2d[0] = cam.fx * x / z + cam.cx;
    p.mean2d[1] = cam.fy * y / z + cam.cy;
}

// Screen radius (ceil of 3 sigma of the largest axis, eigenvalue floored as gsplat does) or 0 when culled.
__device__ __forceinline__ int screen_radius(const GaussianProjection& p, int width, int height) {
    const float a = p.cov2d[0], b = p.cov2d[1], c = p.cov2d[2];
    const float det = a * c - b * b;
    const float half_trace = 0.5f * (a + c);
    const float largest_eigenvalue = half_trace + sqrtf(fmaxf(half_trace * half_trace - det, 0.01f));
    const float radius = ceilf(3.f * sqrtf(fmaxf(largest_eigenvalue, 0.f)));
    const bool visible = det > 0.f && p.mean2d[0] + radius > 0.f &&
                         p.mean2d[0] - radius < static_cast<float>(width) && p.mean2d[1] + radius > 0.f &&
                         p.mean2d[1] - radius < static_cast<float>(height);
    return visible ? static_cast<int>(radius) : 0;
}

__global__ void project_gaussians_forward_kernel(
    int n,
    const float* __restrict__ means,    // [N, 3]
    const float* __restrict__ quats,    // [N, 4]
    const float* __restrict__ scales,   // [N, 3]
    const float* __restrict__ viewmat,  // [4, 4]
    const float* __restrict__ K,        // [3, 3]
    int width, int height, float near_plane, float far_plane, float eps2d,
    float* __restrict__ means2d,  // [N, 2], 0 where culled
    float* __restrict__ conics,   // [N, 3], 0 where culled
    float* __restrict__ depths,   // [N] camera z, also where culled
    int32_t* __restrict__ radii,  // [N], 0 where culled
    float* __restrict__ cov2d     // [N, 3] (a, b, c) with eps2d, 0 where culled
) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const PinholeCamera cam = load_camera(viewmat, K, width, height);
    float mean_c[3];
    world_to_camera(cam, means + 3 * i, mean_c);
    depths[i] = mean_c[2];
    for (int k = 0; k < 2; ++k) {
        means2d[2 * i + k] = 0.f;
    }
    for (int k = 0; k < 3; ++k) {
        conics[3 * i + k] = 0.f;
        cov2d[3 * i + k] = 0.f;
    }
    radii[i] = 0;
    if (!(mean_c[2] >= near_plane && mean_c[2] <= far_plane)) {
        return;
    }
    GaussianProjection p;
    project_gaussian(cam, mean_c, quats + 4 * i, scales + 3 * i, eps2d, p);
    const int radius = screen_radius(p, width, height);
    if (radius == 0) {
        return;
    }
    const float a = p.cov2d[0], b = p.cov2d[1], c = p.cov2d[2];
    const float det = a * c - b * b;
    radii[i] = radius;
    means2d[2 * i] = p.mean2d[0];
    means2d[2 * i + 1] = p.mean2d[1];
    conics[3 * i] = c / det;
    conics[3 * i + 1] = -b / det;
    conics[3 * i + 2] = a / det;
    for (int k = 0; k < 3; ++k) {
        cov2d[3 * i + k] = p.cov2d[k];
    }
}

// Gradients of <v_means2d, means2d> + <v_conics, conics> + <v_depths, depths> w.r.t. means, quats, scales and
// (per Gaussian, summed by the caller) the top three rows of viewmat. Culled Gaussians (radius 0) only pass
// the depth gradient on, as projection.py masks their means2d and conics to constants.
__global__ void project_gaussians_backward_kernel(
    int n,
    const float* __restrict__ means,      // [N, 3]
    const float* __restrict__ quats,      // [N, 4]
    const float* __restrict__ scales,     // [N, 3]
    const float* __restrict__ viewmat,    // [4, 4]
    const float* __restrict__ K,          // [3, 3]
    int width, int height, float eps2d,
    const int32_t* __restrict__ radii,     // [N] from the forward pass
    const float* __restrict__ v_means2d,   // [N, 2]
    const float* __restrict__ v_conics,    // [N, 3]
    const float* __restrict__ v_depths,    // [N]
    float* __restrict__ v_means,           // [N, 3]
    float* __restrict__ v_quats,           // [N, 4]
    float* __restrict__ v_scales,          // [N, 3]
    float* __restrict__ v_viewmat_rows     // [N, 12] gradient of viewmat[:3, :] per Gaussian, or nullptr
) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const PinholeCamera cam = load_camera(viewmat, K, width, height);
    const float* m = means + 3 * i;
    float mean_c[3];
    world_to_camera(cam, m, mean_c);
    float v_mean_c[3] = {0.f, 0.f, v_depths[i]};
    float v_R[9] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};  // viewmat rotation, covariance part
    for (int k = 0; k < 4; ++k) {
        v_quats[4 * i + k] = 0.f;
    }
    for (int k = 0; k < 3; ++k) {
        v_scales[3 * i + k] = 0.f;
    }

    if (radii[i] > 0) {
        const float* scale = scales + 3 * i;
        GaussianProjection p;
        project_gaussian(cam, mean_c, quats + 4 * i, scale, eps2d, p);
        const float x = mean_c[0], y = mean_c[1], z = mean_c[2];

        // conics = inverse of [[a, b], [b, c]]: d(S^-1) = -S^-1 dS S^-1.
        const float a = p.cov2d[0], b = p.cov2d[1], c = p.cov2d[2];
        const float det = a * c - b * b;
        const float A = c / det, B = -b / det, C = a / det;
        const float vA = v_conics[3 * i], vB = v_conics[3 * i + 1], vC = v_conics[3 * i + 2];
        const float v_a = -(A * A * vA + A * B * vB + B * B * vC);
        const float v_b = -(2.f * A * B * vA + (A * C + B * B) * vB + 2.f * B * C * vC);
        const float v_c = -(B * B * vA + B * C * vB + C * C * vC);
        // b is the mean of the two off-diagonal entries, so each receives half of v_b.
        const float G[4] = {v_a, 0.5f * v_b, 0.5f * v_b, v_c};  // gradient of cov2d, row-major 2x2

        // means2d = (fx x / z + cx, fy y / z + cy)
        const float vmx = v_means2d[2 * i], vmy = v_means2d[2 * i + 1];
        v_mean_c[0] += vmx * cam.fx / z;
        v_mean_c[1] += vmy * cam.fy / z;
        v_mean_c[2] += -(vmx * cam.fx * x + vmy * cam.fy * y) / (z * z);

        // cov2d = J covar_c J^T: v_covar_c = J^T G J, v_J = G J covar_c^T + G^T J covar_c.
        float GJ[6], GtJ[6];
        for (int r = 0; r < 2; ++r) {
            for (int col = 0; col < 3; ++col) {
                GJ[3 * r + col] = G[2 * r] * p.J[col] + G[2 * r + 1] * p.J[3 + col];
                GtJ[3 * r + col] = G[r] * p.J[col] + G[2 + r] * p.J[3 + col];
            }
        }
        float v_covar_c[9];
        for (int r = 0; r < 3; ++r) {
            for (int col = 0; col < 3; ++col) {
                v_covar_c[3 * r + col] = p.J[r] * GJ[col] + p.J[3 + r] * GJ[3 + col];
            }
        }
        float v_J[6];
        for (int r = 0; r < 2; ++r) {
            for (int col = 0; col < 3; ++col) {
                float total = 0.f;
                for (int k = 0; k < 3; ++k) {
                    total += GJ[3 * r + k] * p.covar_c[3 * col + k] + GtJ[3 * r + k] * p.covar_c[3 * k + col];
                }
                v_J[3 * r + col] = total;
            }
        }

        // J = [[fx / z, 0, -fx tx / z^2], [0, fy / z, -fy ty / z^2]], tx = z * clamp(x / z), ty likewise.
        const float z2 = z * z, z3 = z2 * z;
        const float v_tx = v_J[2] * (-cam.fx / z2);
        const float v_ty = v_J[5] * (-cam.fy / z2);
        v_mean_c[2] += v_J[0] * (-cam.fx / z2) + v_J[2] * (2.f * cam.fx * p.tx / z3) +
                       v_J[4] * (-cam.fy / z2) + v_J[5] * (2.f * cam.fy * p.ty / z3);
        v_mean_c[2] += v_tx * p.ratio_x + v_ty * p.ratio_y;
        if (p.unclamped_x) {
            const float v_ratio = v_tx * z;
            v_mean_c[0] += v_ratio / z;
            v_mean_c[2] += -v_ratio * x / z2;
        }
        if (p.unclamped_y) {
            const float v_ratio = v_ty * z;
            v_mean_c[1] += v_ratio / z;
            v_mean_c[2] += -v_ratio * y / z2;
        }

        // covar_c = R covar R^T (v_covar_c is symmetric): v_covar = R^T v_covar_c R, v_R += 2 v_covar_c R covar.
        float tmp[9], v_covar[9];
        mat3_mul(v_covar_c, cam.R, tmp);
        mat3_mul_at(cam.R, tmp, v_covar);
        if (v_viewmat_rows != nullptr) {
            float RS[9];
            mat3_mul(cam.R, p.covar, RS);
            mat3_mul(v_covar_c, RS, tmp);
            for (int k = 0; k < 9; ++k) {
                v_R[k] = 2.f * tmp[k];
            }
        }

        // covar = M M^T with M = R(qn) diag(scale) (v_covar is symmetric): v_M = 2 v_covar M.
        float v_M[9];
        mat3_mul(v_covar, p.M, v_M);
        float v_rot[9];
        for (int r = 0; r < 3; ++r) {
            for (int col = 0; col < 3; ++col) {
                v_M[3 * r + col] *= 2.f;
                v_rot[3 * r + col] = v_M[3 * r + col] * scale[col];
            }
        }
        for (int col = 0; col < 3; ++col) {
            v_scales[3 * i + col] =
                v_M[col] * p.rot[col] + v_M[3 + col] * p.rot[3 + col] + v_M[6 + col] * p.rot[6 + col];
        }

        // qn = q / |q|: v_q = (v_qn - qn <qn, v_qn>) / |q|.
        float v_qn[4];
        quat_to_rotmat_vjp(p.qn, v_rot, v_qn);
        const float dot = p.qn[0] * v_qn[0] + p.qn[1] * v_qn[1] + p.qn[2] * v_qn[2] + p.qn[3] * v_qn[3];
        for (int k = 0; k < 4; ++k) {
            v_quats[4 * i + k] = (v_qn[k] - p.qn[k] * dot) / p.q_norm;
        }
    }

    // mean_c = R m + t.
    for (int col = 0; col < 3; ++col) {
        v_means[3 * i + col] =
            cam.R[col] * v_mean_c[0] + cam.R[3 + col] * v_mean_c[1] + cam.R[6 + col] * v_mean_c[2];
    }
    if (v_viewmat_rows != nullptr) {
        float* out = v_viewmat_rows + 12 * i;
        for (int r = 0; r < 3; ++r) {
            for (int col = 0; col < 3; ++col) {
                out[4 * r + col] = v_R[3 * r + col] + v_mean_c[r] * m[col];
            }
            out[4 * r + 3] = v_mean_c[r];
        }
    }
}

}  // namespace avatar_cuda
