"""Camera intrinsics, a rigid canonical face shape and per-frame head poses from face-mesh landmarks.

Conventions (later stages rely on them):

- Pixels: continuous crop coordinates, (0, 0) at the top-left corner of the crop, pixel (i, j) covers
  [i, i + 1] x [j, j + 1], so its centre is at (i + 0.5, j + 0.5). These are mediapipe's normalised
  coordinates times `size` and what gsplat's rasteriser uses; the principal point is the crop centre
  (size / 2, size / 2).
- Camera: OpenCV pinhole, x right, y down, z forward (away from the camera), square pixels, no distortion:
  u = f * x / z + size / 2, v = f * y / z + size / 2.
- Head frame: metres. Origin at the centroid of the `STABLE_LANDMARKS` of the canonical shape. x points from
  the subject's right to left side (image right on a frontal face, from symmetric landmark pairs), y points
  down along the glabella (9) -> subnasale (2) line made orthogonal to x, z = x cross y points into the head,
  so a face looking straight into the camera has R = I. The scale is set by the outer eye corners
  (landmarks 33 and 263) being `EYE_CORNER_DISTANCE_M` apart, a typical adult value.
- Pose: X_cam = R @ X_head + t, R: head -> camera.

Method:

1. Observation model. x, y are the perspective projection of a rigid shape (only the `STABLE_LANDMARKS` are
   fitted). Mediapipe's z is modelled as weak-perspective relative depth, z = k * (f / t_z) * (R @ X)_z + b,
   with one unknown scale k for the clip and an unknown offset b per frame, and weighted `_Z_WEIGHT` against
   a pixel. x, y alone leave the depth of the shape and the absolute pitch ill-conditioned when the head
   turns only a few degrees (a talking head): on real clips an x, y-only fit tilted the face by ~15 degrees
   against mediapipe's own 3D. The z term pins these; perspective, and so f, is still decided by x, y.
2. Initial canonical shape: generalised similarity Procrustes on the landmarks' (x, y, z), aligned on the
   stable landmarks, averaged.
3. Calibration on up to `_FIT_FRAMES` evenly spaced valid frames: bundle adjustment (Levenberg-Marquardt;
   the per-frame pose and offset are eliminated by a Schur complement) of the stable shape, the poses and k,
   at fixed focals on a log grid over `FOCAL_SEARCH_RANGE` x size, each warm-started from the previous one;
   the best is then refined with the focal free. The fit is refitted at f * 1.5 and f / 1.5: when the smaller
   rise of the residual is under `_MIN_FOCAL_RISE` (relative), or f lies within a factor 1.5 of the search
   bounds, the clip does not constrain f (too little head rotation, or a nearly orthographic view). The fit
   then uses the focal of a `DEFAULT_FOV_DEG` field of view of the crop, logs a warning and sets
   `focal_estimated = False`, as it does with fewer than `_MIN_FOCAL_FRAMES` valid frames. The estimate
   relies on mediapipe's x, y carrying the true perspective; on real clips they partly carry the network's
   own prior, so an estimated focal is approximate.
4. The other landmarks (lips, jaw, eyelids...) are triangulated linearly from the calibrated poses (x, y
   and z rows; they are averages over the expressions seen), then the whole shape is put in the head frame.
5. Per-frame poses: a batched Levenberg-Marquardt PnP (x, y, z) of the stable landmarks against the canonical
   shape on every valid frame, started from a 3D similarity fit, then zero-phase temporal smoothing over
   valid frames only: a Gaussian-weighted local linear fit (centred kernel), which equals plain Gaussian
   smoothing inside a run of valid frames and, unlike it, reproduces a linear trend without lag or bias at
   the clip ends and next to gaps. Rotations are smoothed as unit quaternions in the hemisphere of their mean.
   Invalid frames take the pose of the nearest valid frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import correlate1d
from scipy.spatial.transform import Rotation

from avatar.core.errors import AvatarError
from avatar.core.pinhole import centered_intrinsics, focal_from_fov, project
from avatar.face.landmarks import (
    EYE_OUTER_CORNERS,
    GLABELLA,
    MIRROR_PAIRS,
    NUM_LANDMARKS,
    STABLE_LANDMARKS,
    SUBNASALE,
)

log = logging.getLogger(__name__)

EYE_CORNER_DISTANCE_M = 0.09
DEFAULT_FOV_DEG = 36.0
FOCAL_SEARCH_RANGE = (0.4, 5.0)  # times the crop size


_FIT_FRAMES = 120  # frames subsampled for the focal search and the canonical shape
_MIN_FOCAL_FRAMES = 25  # fewer valid frames: the default focal is used
_GRID_POINTS = 7
_GRID_ITERATIONS = 10  # bundle adjustment iterations per focal of the coarse grid
_JOINT_ITERATIONS = 50
_FLATNESS_FACTOR = 1.5
_MIN_FOCAL_RISE = 0.002
_TRIANGULATION_DAMPING = 1e-3
_Z_WEIGHT = 0.3  # weight of a relative-depth residual (pixels) against a pixel residual

_STABLE = np.asarray(STABLE_LANDMARKS)


@dataclass
class HeadPoseFit:
    focal_px: float
    K: np.ndarray  # [3, 3] pinhole intrinsics, principal point at the crop centre
    canonical: np.ndarray  # [478, 3] rigid canonical face shape in the head frame, metres
    rotations: np.ndarray  # [N, 3, 3] head -> camera
    translations: np.ndarray  # [N, 3] X_cam = R @ X_head + t, metres
    reprojection_error_px: np.ndarray  # [N] mean pixel error of the stable landmarks (nan where not valid)
    focal_estimated: bool  # True: f was estimated from the clip; False: given, or the default field of view


def default_focal_px(size: int, fov_deg: float = DEFAULT_FOV_DEG) -> float:
    """Focal length in pixels that gives the crop a horizontal field of view of `fov_deg`."""
    return focal_from_fov(fov_deg, size)


def _skew(v: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] with skew(a) @ b = a x b."""
    out = np.zeros(v.shape + (3,))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """[..., 3] rotation vectors -> [..., 3, 3] matrices."""
    theta2 = np.sum(rotvec**2, axis=-1)[..., None, None]
    theta = np.sqrt(theta2)
    small = theta2 < 1e-12
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1 - theta2 / 6, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta2 / 24, (1 - np.cos(safe)) / safe**2)
    k = _skew(rotvec)
    return np.eye(3) + a * k + b * (k @ k)


def _similarity_align(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """src, dst [..., P, 3] -> scale [...], rotation [..., 3, 3], offset [..., 3] minimising
    |dst - (scale * R @ src + offset)|^2 (Umeyama, proper rotations only)."""
    mean_src, mean_dst = src.mean(axis=-2), dst.mean(axis=-2)
    a, b = src - mean_src[..., None, :], dst - mean_dst[..., None, :]
    u, s, vt = np.linalg.svd(np.einsum("...pi,...pj->...ij", b, a))
    sign = np.sign(np.linalg.det(u @ vt))
    s = s.copy()
    s[..., 2] *= sign
    u = u.copy()
    u[..., :, 2] *= sign[..., None]
    rotation = u @ vt
    scale = s.sum(axis=-1) / np.sum(a**2, axis=(-2, -1))
    offset = mean_dst - scale[..., None] * np.einsum("...ij,...j->...i", rotation, mean_src)
    return scale, rotation, offset


def _head_frame(points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """points [478, 3] in a right-handed frame -> (scale, axes [3, 3], origin [3]) such that
    scale * axes @ (points - origin) is the shape in the head frame (see the module docstring)."""
    left, right = np.asarray(MIRROR_PAIRS).T
    x = np.sum(points[right] - points[left], axis=0)
    x /= np.linalg.norm(x)
    down = points[SUBNASALE] - points[GLABELLA]
    y = down - (down @ x) * x
    y /= np.linalg.norm(y)
    axes = np.stack([x, y, np.cross(x, y)])
    origin = points[_STABLE].mean(axis=0)
    scale = EYE_CORNER_DISTANCE_M / np.linalg.norm(
        points[EYE_OUTER_CORNERS[1]] - points[EYE_OUTER_CORNERS[0]]
    )
    return float(scale), axes, origin


def to_head_frame(points: np.ndarray) -> np.ndarray:
    """A face shape [478, 3] in any right-handed frame with y roughly down the face and z into it (e.g.
    mediapipe's x, y, z) -> the same shape in the head frame of the module docstring, in metres."""
    scale, axes, origin = _head_frame(points)
    return scale * (points - origin) @ axes.T


def _initial_canonical(observed: np.ndarray, iterations: int = 3) -> np.ndarray:
    """observed [N, 478, 3] landmarks (pixels, relative depth) -> [478, 3] mean shape in the head frame."""
    reference = observed[0]
    for _ in range(iterations):
        scale, rotation, offset = _similarity_align(observed[:, _STABLE], reference[_STABLE])
        aligned = scale[:, None, None] * observed @ rotation.transpose(0, 2, 1) + offset[:, None, :]
        reference = to_head_frame(aligned.mean(axis=0))
    return reference


def _solve_spd(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched Cholesky solve of small symmetric positive definite systems, A [..., n, n], B [..., n, k] ->
    [..., n, k]. Plain array arithmetic: for thousands of 3x3 or 7x7 systems this is much faster than LAPACK's
    per-matrix calls."""
    n = A.shape[-1]
    L = np.zeros_like(A)
    for j in range(n):
        L[..., j, j] = np.sqrt(np.maximum(A[..., j, j] - np.sum(L[..., j, :j] ** 2, axis=-1), 1e-300))
        below = A[..., j + 1 :, j] - np.sum(L[..., j + 1 :, :j] * L[..., None, j, :j], axis=-1)
        L[..., j + 1 :, j] = below / L[..., j, j, None]
    y = np.zeros(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + B.shape[-2:])
    for j in range(n):
        y[..., j, :] = (B[..., j, :] - np.sum(L[..., j, :j, None] * y[..., :j, :], axis=-2)) / L[
            ..., j, j, None
        ]
    x = np.zeros_like(y)
    for j in reversed(range(n)):
        above = np.sum(L[..., j + 1 :, j, None] * x[..., j + 1 :, :], axis=-2)
        x[..., j, :] = (y[..., j, :] - above) / L[..., j, j, None]
    return x


def _damped(block: np.ndarray, damping: float | np.ndarray) -> np.ndarray:
    """Marquardt damping of the last two axes: block + damping * diag(block)."""
    diagonal = np.einsum("...ii->...i", block)
    damping = np.asarray(damping)[..., None]
    return block + (damping * diagonal + 1e-12)[..., None] * np.eye(block.shape[-1])


@dataclass
class _Observations:
    uv: np.ndarray  # [N, P, 2] pixels
    z: np.ndarray  # [N, P] mediapipe relative depth, pixels
    centre: float


@dataclass
class _Solution:
    """Shape, poses and camera for a set of frames. The landmarks' relative depth is modelled as
    z = depth_scale * (focal / t_z) * (R @ X)_z + z_offset: the weak-perspective depth in pixels."""

    points: np.ndarray  # [P, 3] head frame
    rotations: np.ndarray  # [N, 3, 3]
    translations: np.ndarray  # [N, 3]
    z_offsets: np.ndarray  # [N]
    focal: float
    depth_scale: float
    rms: float = math.nan  # root mean square of the weighted residuals

    def with_focal(self, focal: float) -> _Solution:
        """The same shape and rotations seen with another focal: the head moves along the optical axis so that
        its image keeps its size."""
        translations = self.translations.copy()
        translations[:, 2] *= focal / self.focal
        return _Solution(self.points, self.rotations, translations, self.z_offsets, focal, self.depth_scale)


def _residuals(s: _Solution, obs: _Observations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (rotated points [N, P, 3], camera points [N, P, 3], residuals [N, P, 3]: u, v in pixels and the
    weighted relative depth)."""
    rotated = s.points @ s.rotations.transpose(0, 2, 1)
    cam = rotated + s.translations[:, None, :]
    uv = s.focal * cam[..., :2] / np.maximum(cam[..., 2:3], 1e-9) + obs.centre
    z_scale = s.depth_scale * s.focal / s.translations[:, 2]
    z = z_scale[:, None] * rotated[..., 2] + s.z_offsets[:, None]
    residual = np.concatenate([uv - obs.uv, (_Z_WEIGHT * (z - obs.z))[..., None]], axis=-1)
    return rotated, cam, residual


def _pose_jacobian(s: _Solution, rotated: np.ndarray, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (d (u, v) / d camera point [N, P, 2, 3], d residual / d (w, dt, z offset) [N, P, 3, 7]) for
    R <- exp(w) R, t <- t + dt."""
    n, p = rotated.shape[:2]
    inv_z = 1 / cam[..., 2]
    d_uv_cam = np.zeros((n, p, 2, 3))
    d_uv_cam[..., 0, 0] = d_uv_cam[..., 1, 1] = s.focal * inv_z
    d_uv_cam[..., :, 2] = -s.focal * cam[..., :2] * inv_z[..., None] ** 2
    z_scale = (_Z_WEIGHT * s.depth_scale * s.focal / s.translations[:, 2])[:, None]  # [N, 1]
    d_pose = np.zeros((n, p, 3, 7))
    d_pose[:, :, :2, :3] = np.cross(rotated[:, :, None, :], d_uv_cam)  # -J @ skew(Rx): each row r -> Rx x r
    d_pose[:, :, :2, 3:6] = d_uv_cam
    d_pose[:, :, 2, 0] = z_scale * rotated[..., 1]
    d_pose[:, :, 2, 1] = -z_scale * rotated[..., 0]
    d_pose[:, :, 2, 5] = -z_scale * rotated[..., 2] / s.translations[:, 2:3]
    d_pose[:, :, 2, 6] = _Z_WEIGHT
    return d_uv_cam, d_pose


def _shape_jacobians(
    s: _Solution, obs: _Observations, rotated: np.ndarray, d_uv_cam: np.ndarray, residual: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """-> (d residual / d X [N, P, 3, 3], d residual / d (log focal, log depth scale) [N, P, 3, 2])."""
    n, p = rotated.shape[:2]
    z_scale = (_Z_WEIGHT * s.depth_scale * s.focal / s.translations[:, 2])[:, None]  # [N, 1]
    R = s.rotations[:, None, :, :]  # [N, 1, 3, 3]
    d_point = np.empty((n, p, 3, 3))
    d_point[:, :, 0] = d_uv_cam[..., 0, 0, None] * R[..., 0, :] + d_uv_cam[..., 0, 2, None] * R[..., 2, :]
    d_point[:, :, 1] = d_uv_cam[..., 1, 1, None] * R[..., 1, :] + d_uv_cam[..., 1, 2, None] * R[..., 2, :]
    d_point[:, :, 2] = z_scale[..., None] * R[..., 2, :]
    d_global = np.zeros((n, p, 3, 2))
    d_global[:, :, :2, 0] = residual[..., :2] + obs.uv - obs.centre
    d_global[:, :, 2, 0] = d_global[:, :, 2, 1] = z_scale * rotated[..., 2]
    return d_point, d_global


def _apply_pose_step(
    s: _Solution, step: np.ndarray, points: np.ndarray, log_globals: np.ndarray
) -> _Solution:
    return _Solution(
        points,
        _rodrigues(step[:, :3]) @ s.rotations,
        s.translations + step[:, 3:6],
        s.z_offsets + step[:, 6],
        s.focal * math.exp(log_globals[0]),
        s.depth_scale * math.exp(log_globals[1]),
    )


def _refine_poses(s: _Solution, obs: _Observations, iterations: int = 4) -> _Solution:
    """Batched Levenberg-Marquardt over each frame's pose and depth offset, shape and camera fixed."""
    n = len(s.rotations)
    damping = np.full(n, 1e-3)
    rotated, cam, residual = _residuals(s, obs)
    cost = np.sum(residual**2, axis=(1, 2))
    for _ in range(iterations):
        _, d_pose = _pose_jacobian(s, rotated, cam)
        flat = d_pose.reshape(n, -1, 7)
        hessian = flat.transpose(0, 2, 1) @ flat
        gradient = flat.transpose(0, 2, 1) @ residual.reshape(n, -1, 1)
        step = -_solve_spd(_damped(hessian, damping), gradient)[..., 0]
        candidate = _apply_pose_step(s, step, s.points, np.zeros(2))
        rotated_new, cam_new, residual_new = _residuals(candidate, obs)
        cost_new = np.sum(residual_new**2, axis=(1, 2))
        better = (cost_new < cost) & np.all(cam_new[..., 2] > 0, axis=1)
        s = _Solution(
            s.points,
            np.where(better[:, None, None], candidate.rotations, s.rotations),
            np.where(better[:, None], candidate.translations, s.translations),
            np.where(better, candidate.z_offsets, s.z_offsets),
            s.focal,
            s.depth_scale,
        )
        rotated = np.where(better[:, None, None], rotated_new, rotated)
        cam = np.where(better[:, None, None], cam_new, cam)
        residual = np.where(better[:, None, None], residual_new, residual)
        cost = np.where(better, cost_new, cost)
        damping = np.where(better, damping * 0.3, damping * 10)
    return replace(s, rms=math.sqrt(float(np.sum(cost)) / residual.size))


def _bundle_adjust(start: _Solution, obs: _Observations, *, free_focal: bool, iterations: int) -> _Solution:
    """Levenberg-Marquardt over the stable shape, the poses, the depth scale and optionally the log focal. The
    per-frame unknowns are eliminated by a Schur complement, leaving a dense system in the 3P shape unknowns
    and the globals."""
    s = start
    n, p = obs.uv.shape[:2]
    globals_used = [0, 1] if free_focal else [1]
    size = 3 * p + len(globals_used)
    damping = 1e-4
    rotated, cam, residual = _residuals(s, obs)
    cost = float(np.sum(residual**2))
    for _ in range(iterations):
        d_uv_cam, d_pose = _pose_jacobian(s, rotated, cam)
        d_point, d_global = _shape_jacobians(s, obs, rotated, d_uv_cam, residual)
        d_global = d_global[..., globals_used]
        flat_pose = d_pose.reshape(n, -1, 7).transpose(0, 2, 1)  # [N, 7, 3P]
        pose_block = flat_pose @ flat_pose.transpose(0, 2, 1)
        pose_gradient = flat_pose @ residual.reshape(n, -1, 1)  # [N, 7, 1]
        cross_points = (d_pose.transpose(0, 1, 3, 2) @ d_point).transpose(0, 2, 1, 3).reshape(n, 7, 3 * p)
        cross = np.concatenate([cross_points, flat_pose @ d_global.reshape(n, -1, len(globals_used))], axis=2)
        global_block = np.zeros((size, size))
        point_blocks = np.moveaxis(d_point, 1, 0).reshape(p, -1, 3)
        point_blocks = point_blocks.transpose(0, 2, 1) @ point_blocks
        for j in range(p):
            global_block[3 * j : 3 * j + 3, 3 * j : 3 * j + 3] = point_blocks[j]
        point_global = (d_point.transpose(0, 1, 3, 2) @ d_global).sum(axis=0).reshape(3 * p, -1)
        global_block[: 3 * p, 3 * p :] = point_global
        global_block[3 * p :, : 3 * p] = point_global.T
        flat_global = d_global.reshape(-1, len(globals_used))
        global_block[3 * p :, 3 * p :] = flat_global.T @ flat_global
        point_gradient = (d_point.transpose(0, 1, 3, 2) @ residual[..., None]).sum(axis=0).reshape(-1)
        global_gradient = np.concatenate([point_gradient, flat_global.T @ residual.reshape(-1)])
        cross_and_gradient = np.concatenate([cross, pose_gradient], axis=2)
        previous = cost
        while damping < 1e6:
            pose_inverse = _solve_spd(_damped(pose_block, damping), np.broadcast_to(np.eye(7), (n, 7, 7)))
            eliminated = pose_inverse @ cross_and_gradient
            reduced, pose_only = eliminated[..., :-1], eliminated[..., -1]
            flat_reduced = reduced.reshape(7 * n, size)
            schur = _damped(global_block, damping) - cross.reshape(7 * n, size).T @ flat_reduced
            rhs = -global_gradient + flat_reduced.T @ pose_gradient.reshape(7 * n)
            global_step = np.linalg.solve(schur, rhs)
            pose_step = -pose_only - reduced @ global_step
            log_globals = np.zeros(2)
            log_globals[globals_used] = global_step[3 * p :]
            points = s.points + global_step[: 3 * p].reshape(p, 3)
            candidate = _apply_pose_step(s, pose_step, points, log_globals)
            rotated_new, cam_new, residual_new = _residuals(candidate, obs)
            cost_new = float(np.sum(residual_new**2))
            if cost_new < cost and np.all(cam_new[..., 2] > 0):
                s, rotated, cam, residual, cost = candidate, rotated_new, cam_new, residual_new, cost_new
                damping = max(damping * 0.3, 1e-7)
                break
            damping *= 10
        if cost > previous * (1 - 1e-6):
            break
    return replace(s, rms=math.sqrt(cost / residual.size))


def _initial_solution(
    canonical: np.ndarray, observed: np.ndarray, focal: float, centre: float, depth_scale: float = 1.0
) -> tuple[_Solution, _Observations]:
    """Weak-perspective start from a 3D similarity fit of the canonical shape to the landmarks' (x, y, z) (the
    similarity's scale, pixels per metre, is focal / depth), refined by PnP. observed [N, 478, 3]."""
    obs = _Observations(observed[:, _STABLE, :2], observed[:, _STABLE, 2], centre)
    target = observed[:, _STABLE] / np.array([1.0, 1.0, depth_scale])
    scale, rotation, offset = _similarity_align(canonical[_STABLE], target)
    depth = focal / scale
    xy = (offset[:, :2] - centre) * (depth / focal)[:, None]
    start = _Solution(
        canonical[_STABLE],
        rotation,
        np.concatenate([xy, depth[:, None]], axis=1),
        offset[:, 2] * depth_scale,
        focal,
        depth_scale,
    )
    return _refine_poses(start, obs), obs


def _triangulate(s: _Solution, observed: np.ndarray, centre: float, prior: np.ndarray) -> np.ndarray:
    """observed [N, P, 3] landmarks of other points than the solution's, prior [P, 3] -> [P, 3] head-frame
    points that best explain them given the solution's poses and camera: linear least squares on the pixel
    rows (weighted by 1 / depth, so that they measure pixels) and the relative depth rows. A small pull
    towards `prior` keeps directions that the data do not constrain."""
    R, t, f = s.rotations, s.translations, s.focal
    depth = prior @ R[:, 2].T + t[:, 2]  # [P, N]
    weight = 1 / np.maximum(depth.T, 1e-9)
    offset = observed[..., :2] - centre
    rows, targets = [], []
    for axis in range(2):
        rows.append(
            (offset[..., axis, None] * R[:, None, 2, :] - f * R[:, None, axis, :]) * weight[..., None]
        )
        targets.append((f * t[:, None, axis] - offset[..., axis] * t[:, None, 2]) * weight)
    z_scale = (_Z_WEIGHT * s.depth_scale * f / t[:, 2])[:, None, None]
    rows.append(np.broadcast_to(z_scale * R[:, None, 2, :], rows[0].shape))
    targets.append(_Z_WEIGHT * (observed[..., 2] - s.z_offsets[:, None]))
    A = np.stack(rows, axis=2)  # [N, P, 3, 3]
    b = np.stack(targets, axis=2)  # [N, P, 3]
    flat = np.moveaxis(A, 1, 0).reshape(A.shape[1], -1, 3)
    normal = flat.transpose(0, 2, 1) @ flat
    rhs = np.einsum("npai,npa->pi", A, b)
    pull = _TRIANGULATION_DAMPING * np.trace(normal, axis1=1, axis2=2) / 3
    normal += pull[:, None, None] * np.eye(3)
    rhs += pull[:, None] * prior
    return _solve_spd(normal, rhs[..., None])[..., 0]


def _calibrate(observed: np.ndarray, initial: np.ndarray, size: int) -> tuple[_Solution, bool]:
    """Focal length, stable shape and poses for the frames `observed` [N, 478, 3], and whether the clip
    constrains the focal (if not, the solution uses the default focal)."""
    low, high = (factor * size for factor in FOCAL_SEARCH_RANGE)
    start, obs = _initial_solution(initial, observed, low, size / 2)

    def fixed(s: _Solution, focal: float, iterations: int = _GRID_ITERATIONS) -> _Solution:
        return _bundle_adjust(s.with_focal(focal), obs, free_focal=False, iterations=iterations)

    grid = [fixed(start, low)]
    for focal in np.geomspace(low, high, _GRID_POINTS)[1:]:
        grid.append(fixed(grid[-1], float(focal)))
    best = min(grid, key=lambda s: s.rms)
    joint = _bundle_adjust(best, obs, free_focal=True, iterations=_JOINT_ITERATIONS)
    neighbours = [fixed(joint, joint.focal * factor) for factor in (1 / _FLATNESS_FACTOR, _FLATNESS_FACTOR)]
    rise = min(s.rms for s in neighbours) / joint.rms - 1
    log.debug(
        "focal search: f=%.1f px, rms %.4f, rise %.4f, depth scale %.3f",
        joint.focal,
        joint.rms,
        rise,
        joint.depth_scale,
    )
    if low * _FLATNESS_FACTOR <= joint.focal <= high / _FLATNESS_FACTOR and rise >= _MIN_FOCAL_RISE:
        return joint, True
    default = default_focal_px(size)
    nearest = min(grid, key=lambda s: abs(math.log(s.focal / default)))
    return fixed(nearest, default, _JOINT_ITERATIONS), False


def _smooth_local_linear(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """values [N, D], valid [N] bool -> [N, D]: Gaussian-weighted local linear fit over valid frames,
    evaluated at each frame (centred kernel, no lag; exact on linear trends, also at the ends and next to
    gaps)."""
    radius = max(1, int(math.ceil(4 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    weight = valid.astype(np.float64)
    x = values * weight[:, None]

    def correlate(signal: np.ndarray, taps: np.ndarray) -> np.ndarray:
        return correlate1d(signal, taps, axis=0, mode="constant", cval=0.0)

    s0, s1, s2 = (correlate(weight, kernel * offsets**k) for k in range(3))
    y0, y1 = correlate(x, kernel), correlate(x, kernel * offsets)
    determinant = s0 * s2 - s1**2
    linear = determinant > 1e-6 * np.maximum(s0, 1e-12) ** 2
    safe_det = np.where(linear, determinant, 1.0)
    fitted = (s2[:, None] * y0 - s1[:, None] * y1) / safe_det[:, None]
    average = y0 / np.maximum(s0, 1e-12)[:, None]
    return np.where(linear[:, None], fitted, average)


def _smooth_poses(
    R: np.ndarray, t: np.ndarray, valid: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """R [N, 3, 3], t [N, 3] (meaningful on valid frames) -> smoothed poses on all frames; invalid frames get
    the pose of the nearest valid frame."""
    indices = np.flatnonzero(valid)
    R, t = R.copy(), t.copy()
    if sigma > 0:
        quats = Rotation.from_matrix(R[indices]).as_quat()
        _, eigenvectors = np.linalg.eigh(quats.T @ quats)
        quats *= np.where(quats @ eigenvectors[:, -1] < 0, -1.0, 1.0)[:, None]
        full = np.zeros((len(R), 4))
        full[indices] = quats
        smoothed = _smooth_local_linear(np.concatenate([full, t], axis=1), valid, sigma)
        quats = smoothed[indices, :4]
        R[indices] = Rotation.from_quat(quats / np.linalg.norm(quats, axis=1, keepdims=True)).as_matrix()
        t[indices] = smoothed[indices, 4:]
    nearest = indices[np.clip(np.searchsorted(indices, np.arange(len(R))), 0, len(indices) - 1)]
    previous = indices[np.clip(np.searchsorted(indices, np.arange(len(R))) - 1, 0, len(indices) - 1)]
    frames = np.arange(len(R))
    nearest = np.where(np.abs(previous - frames) <= np.abs(nearest - frames), previous, nearest)
    return R[nearest], t[nearest]


def fit_head_pose(
    landmarks: np.ndarray,
    valid: np.ndarray,
    size: int,
    *,
    smoothing_sigma_frames: float = 1.0,
    focal_px: float | None = None,
) -> HeadPoseFit:
    """Pinhole camera, canonical face shape and per-frame head poses (conventions in the module docstring).

    landmarks: [N, 478, 3] crop pixels: x, y in pixels; z = mediapipe z * size (relative depth)
    valid: [N] bool, frames with real (tracked or interpolated) landmarks
    size: side of the square crop in pixels
    smoothing_sigma_frames: standard deviation of the zero-phase temporal pose smoothing (0: none)
    focal_px: a known focal length in pixels; None estimates it from the clip
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 3) or valid.shape != landmarks.shape[:1]:
        raise ValueError(
            f"expected landmarks [N, {NUM_LANDMARKS}, 3] and valid [N], got {landmarks.shape}, {valid.shape}"
        )
    valid = valid & np.all(np.isfinite(landmarks), axis=(1, 2))
    indices = np.flatnonzero(valid)
    if len(indices) == 0:
        raise AvatarError(
            "no frame of the clip has face landmarks, so the head pose cannot be fitted",
            fix="Record the face fully in view, well lit and facing the camera",
        )
    centre = size / 2
    observed = landmarks[indices]
    subsample = observed[np.unique(np.linspace(0, len(indices) - 1, _FIT_FRAMES).round().astype(int))]
    initial = _initial_canonical(subsample)
    if focal_px is None and len(subsample) < _MIN_FOCAL_FRAMES:
        log.warning("only %d frames with landmarks: the focal length is not estimated", len(subsample))
        focal_px = default_focal_px(size)
    if focal_px is None:
        solution, focal_estimated = _calibrate(subsample, initial, size)
        if not focal_estimated:
            log.warning(
                "the clip does not constrain the focal length (too little head rotation, or a distant "
                "camera); using a %.0f degree field of view of the crop (f = %.0f px)",
                DEFAULT_FOV_DEG,
                solution.focal,
            )
    else:
        focal_estimated = False
        start, obs = _initial_solution(initial, subsample, focal_px, centre)
        solution = _bundle_adjust(start, obs, free_focal=False, iterations=_JOINT_ITERATIONS)
    focal_px = solution.focal
    shape = initial.copy()
    shape[_STABLE] = solution.points
    moving = np.setdiff1d(np.arange(NUM_LANDMARKS), _STABLE)
    shape[moving] = _triangulate(solution, subsample[:, moving], centre, shape[moving])
    canonical = to_head_frame(shape)

    poses, _ = _initial_solution(canonical, observed, focal_px, centre, solution.depth_scale)
    rotations = np.tile(np.eye(3), (len(landmarks), 1, 1))
    translations = np.zeros((len(landmarks), 3))
    rotations[indices], translations[indices] = poses.rotations, poses.translations
    rotations, translations = _smooth_poses(rotations, translations, valid, smoothing_sigma_frames)

    K = centered_intrinsics(focal_px, size)
    error = np.full(len(landmarks), np.nan)
    pixels = project(canonical[_STABLE], rotations[indices], translations[indices], K)
    error[indices] = np.linalg.norm(pixels - observed[:, _STABLE, :2], axis=-1).mean(axis=1)
    return HeadPoseFit(
        focal_px=float(focal_px),
        K=K,
        canonical=canonical,
        rotations=rotations,
        translations=translations,
        reprojection_error_px=error,
        focal_estimated=focal_estimated,
    )
