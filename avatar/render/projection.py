"""EWA projection of 3D Gaussians to screen-space 2D Gaussians (gsplat's pinhole conventions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from avatar.model.rigid import quat_to_rotmat


@dataclass(frozen=True)
class Projection:
    """Screen-space Gaussians; entries with `radii == 0` are culled and hold zeros (except `depths`)."""

    means2d: Tensor  # [N, 2] pixel coordinates; pixel (col, row) has its centre at (col + 0.5, row + 0.5)
    conics: Tensor  # [N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    depths: Tensor  # [N] camera-space z
    radii: Tensor  # [N] int32, ceil(3 sigma) of the largest axis in pixels; 0 for culled
    cov2d: Tensor  # [N, 2, 2] 2D covariance including the eps2d low-pass


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances R S S^T R^T [N, 3, 3] from quaternions [N, 4] (w, x, y, z) and scales [N, 3]."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] standard deviations along the rotated axes
    viewmat: Tensor,  # [4, 4] world -> camera (OpenCV: x right, y down, z forward)
    K: Tensor,  # [3, 3] intrinsics
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Projection:
    """Project 3D Gaussians with the EWA approximation: cov2d = J W Sigma W^T J^T + eps2d I.

    J is the Jacobian of the perspective projection at the mean; as in gsplat and 3DGS, x/z and y/z are
    clamped to the image extent plus 30 % of the half field of view on each side before J is formed, so
    Gaussians far outside the view do not get huge footprints. Gaussians outside [near_plane, far_plane],
    with a degenerate 2D covariance, or whose 3-sigma square misses the image are culled (radius 0).
    """
    rotation, translation = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ rotation.T + translation
    covars_c = rotation @ quat_scale_to_covar(quats, scales) @ rotation.T
    x, y, z = means_c.unbind(-1)

    in_depth = (z >= near_plane) & (z <= far_plane)
    z_safe = torch.where(in_depth, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(z)
    jacobian = torch.stack(
        [fx / z_safe, zero, -fx * tx / z_safe**2, zero, fy / z_safe, -fy * ty / z_safe**2], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = jacobian @ covars_c @ jacobian.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)

    cov_a, cov_b, cov_c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det = cov_a * cov_c - cov_b * cov_b
    with torch.no_grad():
        half_trace = 0.5 * (cov_a + cov_c)
        largest_eigenvalue = half_trace + torch.sqrt(torch.clamp(half_trace**2 - det, min=0.01))
        radius = torch.ceil(3.0 * torch.sqrt(largest_eigenvalue.clamp(min=0)))
        visible = (
            in_depth
            & (det > 0)
            & (means2d[:, 0] + radius > 0)
            & (means2d[:, 0] - radius < width)
            & (means2d[:, 1] + radius > 0)
            & (means2d[:, 1] - radius < height)
        )
        radii = torch.where(visible, radius, torch.zeros_like(radius)).to(torch.int32)

    det_safe = torch.where(visible, det, torch.ones_like(det))
    conics = torch.stack([cov_c / det_safe, -cov_b / det_safe, cov_a / det_safe], dim=-1)
    mask = visible[:, None]
    return Projection(
        means2d=torch.where(mask, means2d, torch.zeros_like(means2d)),
        conics=torch.where(mask, conics, torch.zeros_like(conics)),
        depths=z,
        radii=radii,
        cov2d=torch.where(mask[:, :, None], cov2d, torch.zeros_like(cov2d)),
    )
