"""Initial canonical Gaussians for a head, from the capture's canonical face landmarks, and their first colours.

The face mesh covers only the face (forehead hairline to chin, cheek to cheek). The rest of the head is
filled with a generic shape scaled to the landmarks' bounding box in the head frame (metres; x to the image
right, y down, z into the head; see capture/head_pose.py). With the box's width Wf (x, ~0.14 m), height Hf
(y, hairline to chin, ~0.16 m), top y0, front z0 and back z1 (nose tip and cheek sides):

- face (45 % of the Gaussians): the landmarks themselves, then area-weighted samples on the triangles of a
  Delaunay triangulation of the landmarks seen from the front (x, y), jittered +-1.5 mm along the triangle's
  normal; triangles whose longest edge exceeds 3 x the median longest edge (across the face's concave
  outline) are dropped.
- cranium and hair (40 %): a shell (radii 0.9 to 1 of the ellipsoid's) of an axis-aligned ellipsoid with
  semi-axes 0.55 Wf (x; head breadth ~1.1 x the face-mesh width), 0.55 Hf (y; from 0.35 Hf above the
  hairline, skull and hair, down to 0.75 Hf below it, the occiput) and HEAD_DEPTH_PER_WIDTH * Wf / 2 (z;
  ~0.19 m deep from the forehead, which sits 15 % of the face's depth behind its front z0).
- ears (2 x 2.5 %): shells of ellipsoids with semi-axes (12, 30, 20) mm centred 8 mm outside the face's sides,
  0.42 Hf below the hairline and 20 mm behind the face's side landmarks.
- neck (10 %): the side (radii 0.9 to 1) of a vertical cylinder of radius 0.4 Wf under the cranium's centre,
  from 0.65 Hf below the hairline to 0.4 Hf below the chin.

Generic samples inside the cranium (for the ears and neck), in front of the face or less than 10 mm behind it
(the face as a height field z(x, y) over its triangulation) are discarded and redrawn: the face samples cover
that region and samples in front of it would float before the face. Rows come in this order: face
(landmarks first), cranium, left ear, right ear, neck.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay, cKDTree
from torch import Tensor

from avatar.core.errors import AvatarError
from avatar.model.gaussians import CanonicalGaussians, inverse_sigmoid

FACE_FRACTION = 0.45
CRANIUM_FRACTION = 0.40
EAR_FRACTION = 0.05  # both ears
NECK_FRACTION = 0.10

CRANIUM_WIDTH_PER_FACE_WIDTH = 0.55  # semi-axis: head breadth ~1.1 x the face-mesh width
HEAD_DEPTH_PER_WIDTH = 1.35  # forehead to back of the head, per face-mesh width (0.19 m for 0.14 m)
HAIR_HEIGHT_PER_FACE_HEIGHT = 0.35  # top of skull and hair above the hairline landmark
OCCIPUT_PER_FACE_HEIGHT = 0.75  # lowest point of the cranium ellipsoid below the hairline
FOREHEAD_DEPTH_FRACTION = 0.15  # the forehead's z between the face's front (0) and back (1)
SHELL_INNER_RADIUS = 0.9
EAR_SEMI_AXES_M = (0.012, 0.03, 0.02)
EAR_OUTSET_M = 0.008
EAR_BEHIND_FACE_SIDE_M = 0.02
EAR_HEIGHT_PER_FACE_HEIGHT = 0.42
NECK_RADIUS_PER_WIDTH = 0.4
NECK_TOP_PER_FACE_HEIGHT = 0.65
NECK_BELOW_CHIN_PER_FACE_HEIGHT = 0.4
FACE_JITTER_M = 0.0015
FACE_THICKNESS_M = 0.01  # generic samples in front of the face or less than this behind it are discarded
MAX_EDGE_PER_MEDIAN = 3.0
RASTER_CELL_M = 0.0005
RASTER_SUBPIXEL_BITS = 4

INITIAL_OPACITY = 0.1
INITIAL_COLOR = 0.5
SCALE_NEIGHBOURS = 3
SCALE_RANGE_M = (1e-4, 0.02)
COLOR_PIVOT_DEPTH_M = 0.08


@dataclass(frozen=True)
class HeadProportions:
    """The landmarks' bounding box in the head frame, the unit of the generic head shape (module docstring)."""

    centre_x: float
    width: float  # Wf
    top: float  # y0, hairline
    height: float  # Hf, hairline to chin
    front: float  # z0, nose tip
    back: float  # z1, face sides

    @staticmethod
    def from_landmarks(landmarks: np.ndarray) -> HeadProportions:
        low, high = landmarks.min(0), landmarks.max(0)
        return HeadProportions(
            centre_x=float(low[0] + high[0]) / 2,
            width=float(high[0] - low[0]),
            top=float(low[1]),
            height=float(high[1] - low[1]),
            front=float(low[2]),
            back=float(high[2]),
        )

    @property
    def cranium_centre(self) -> np.ndarray:  # [3]
        forehead = self.front + FOREHEAD_DEPTH_FRACTION * (self.back - self.front)
        vertex = self.top - HAIR_HEIGHT_PER_FACE_HEIGHT * self.height
        occiput = self.top + OCCIPUT_PER_FACE_HEIGHT * self.height
        return np.array([self.centre_x, (vertex + occiput) / 2, forehead + self.cranium_semi_axes[2]])

    @property
    def cranium_semi_axes(self) -> np.ndarray:  # [3]
        vertical = (HAIR_HEIGHT_PER_FACE_HEIGHT + OCCIPUT_PER_FACE_HEIGHT) * self.height / 2
        return np.array(
            [CRANIUM_WIDTH_PER_FACE_WIDTH * self.width, vertical, HEAD_DEPTH_PER_WIDTH * self.width / 2]
        )


def init_head_gaussians(
    canonical_landmarks: np.ndarray | Tensor, num_gaussians: int, seed: int = 0
) -> CanonicalGaussians:
    """Gaussians covering a whole head around the face landmarks (proportions in the module docstring).

    Args:
        canonical_landmarks: [L, 3] face-mesh landmarks in the head frame, metres (L = 478 from capture)
        num_gaussians: how many Gaussians to make (at least 1)
        seed: the same seed and landmarks give the same Gaussians
    Returns:
        CanonicalGaussians with `num_gaussians` rows: identity rotations, isotropic scales equal to the mean
        distance to the 3 nearest other Gaussians (clamped to [0.1, 20] mm), opacity 0.1, grey colour 0.5.
    """
    landmarks = _checked_landmarks(canonical_landmarks)
    if num_gaussians < 1:
        raise ValueError(f"num_gaussians must be at least 1, got {num_gaussians}")
    rng = np.random.default_rng(seed)
    shape = HeadProportions.from_landmarks(landmarks)
    counts = _part_counts(num_gaussians)
    face = _FaceSurface(landmarks)
    cranium_centre, cranium_axes = shape.cranium_centre, shape.cranium_semi_axes

    def hidden(points: np.ndarray) -> np.ndarray:
        return face.covers(points) | _inside_ellipsoid(
            points, cranium_centre, SHELL_INNER_RADIUS * cranium_axes
        )

    parts = [
        face.samples(counts["face"], rng),
        _rejection_sample(
            partial(_ellipsoid_shell, cranium_centre, cranium_axes, rng=rng), counts["cranium"], face.covers
        ),
    ]
    for side, count in ((-1.0, counts["ear_left"]), (1.0, counts["ear_right"])):
        ear_centre = np.array(
            [
                shape.centre_x + side * (shape.width / 2 + EAR_OUTSET_M),
                shape.top + EAR_HEIGHT_PER_FACE_HEIGHT * shape.height,
                _side_depth(landmarks, shape, side) + EAR_BEHIND_FACE_SIDE_M,
            ]
        )
        ear = partial(_ellipsoid_shell, ear_centre, np.array(EAR_SEMI_AXES_M), rng=rng)
        parts.append(_rejection_sample(ear, count, hidden))
    neck = partial(
        _cylinder_side,
        cranium_centre[[0, 2]],
        NECK_RADIUS_PER_WIDTH * shape.width,
        shape.top + NECK_TOP_PER_FACE_HEIGHT * shape.height,
        shape.top + (1.0 + NECK_BELOW_CHIN_PER_FACE_HEIGHT) * shape.height,
        rng=rng,
    )
    parts.append(_rejection_sample(neck, counts["neck"], hidden))
    means = np.concatenate(parts).astype(np.float32)
    return _gaussians_at(means)


def colors_from_frame(
    means: Tensor,  # [N, 3] head frame, metres
    rotation: np.ndarray | Tensor,  # [3, 3] head -> camera
    translation: np.ndarray | Tensor,  # [3] X_cam = R @ X_head + t
    K: np.ndarray | Tensor,  # [3, 3]
    image: np.ndarray | Tensor,  # [H, W, 3] uint8 RGB
    *,
    pivot_depth: float = COLOR_PIVOT_DEPTH_M,
    default: float = INITIAL_COLOR,
) -> Tensor:
    """The frame's colour at each Gaussian's projection, bilinear between pixel centres (pixel (c, r) covers
    [c, c + 1) x [r, r + 1)); occlusion is ignored.

    A Gaussian takes the frame's colour when it projects inside the image, in front of the camera, and lies
    on the camera's side of the plane through (0, 0, pivot_depth) (head frame) perpendicular to the direction
    to the camera: for a frontal camera, every point with z_head < pivot_depth (the face, the ears' front,
    the front of the hair). The others keep `default`.

    Returns:
        colors: Tensor  # [N, 3] float32 in [0, 1] on the device of `means`
    """
    device = means.device
    points = means.detach().float()
    R, t, K = (_as_tensor(value, device).float() for value in (rotation, translation, K))
    pixels = _as_tensor(image, device)
    if pixels.dim() != 3 or pixels.shape[2] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {list(pixels.shape)}")
    height, width = pixels.shape[:2]
    camera_points = points @ R.T + t  # [N, 3]
    depth = camera_points[:, 2]
    projected = camera_points @ K.T
    uv = projected[:, :2] / depth.clamp_min(1e-9)[:, None]  # [N, 2] continuous pixel coordinates
    camera_centre = -R.T @ t  # head frame
    pivot = torch.tensor([0.0, 0.0, pivot_depth], device=device)
    facing = ((points - pivot) * (camera_centre - pivot)).sum(-1) > 0
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
    use = facing & inside & (depth > 0)
    grid = torch.stack([2 * uv[:, 0] / width - 1, 2 * uv[:, 1] / height - 1], dim=-1)  # align_corners=False
    rgb = pixels.permute(2, 0, 1)[None].float() / 255.0
    sampled = F.grid_sample(
        rgb, grid[None, :, None], mode="bilinear", padding_mode="border", align_corners=False
    )
    sampled = sampled[0, :, :, 0].T  # [N, 3]
    return torch.where(use[:, None], sampled, torch.full_like(sampled, default))


def _as_tensor(value: np.ndarray | Tensor, device: torch.device) -> Tensor:
    return (value if isinstance(value, Tensor) else torch.from_numpy(np.ascontiguousarray(value))).to(device)


def _checked_landmarks(canonical_landmarks: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(canonical_landmarks, Tensor):
        canonical_landmarks = canonical_landmarks.detach().cpu().numpy()
    landmarks = np.asarray(canonical_landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[1] != 3 or landmarks.shape[0] < 4:
        raise AvatarError(
            f"canonical landmarks must have shape [L, 3] with L >= 4, got {list(landmarks.shape)}",
            fix="Pass tracking.canonical_landmarks of a capture dataset",
        )
    if not np.isfinite(landmarks).all():
        raise AvatarError("canonical landmarks contain NaN or infinite values", fix="Re-run `avatar capture`")
    return landmarks


def _part_counts(num: int) -> dict[str, int]:
    ear = round(num * EAR_FRACTION / 2)
    counts = {
        "face": round(num * FACE_FRACTION),
        "ear_left": ear,
        "ear_right": ear,
        "neck": round(num * NECK_FRACTION),
    }
    counts["cranium"] = num - sum(counts.values())
    return counts


class _FaceSurface:
    """The face as a height field z(x, y): the frontal Delaunay triangulation of the landmarks, without the
    long triangles that bridge the face's concave outline. Point location uses a raster of triangle indices
    (RASTER_CELL_M cells; scipy's `find_simplex` takes seconds on some inputs)."""

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = landmarks
        triangles = Delaunay(landmarks[:, :2]).simplices
        corners = landmarks[triangles]
        edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(1)
        self.triangles = triangles[edges <= MAX_EDGE_PER_MEDIAN * np.median(edges)]  # [T, 3] landmark indices
        self.origin = landmarks[:, :2].min(0)
        cols, rows = np.ceil((landmarks[:, :2].max(0) - self.origin) / RASTER_CELL_M).astype(int) + 1
        self.triangle_map = np.full((rows, cols), -1, dtype=np.int32)  # [rows (y), cols (x)]
        fixed_point = 1 << RASTER_SUBPIXEL_BITS
        vertices = np.round((landmarks[:, :2] - self.origin) / RASTER_CELL_M * fixed_point).astype(np.int32)
        for index, triangle in enumerate(self.triangles):
            cv2.fillConvexPoly(self.triangle_map, vertices[triangle], index, cv2.LINE_8, RASTER_SUBPIXEL_BITS)

    def covers(self, points: np.ndarray) -> np.ndarray:
        """[M, 3] -> [M] bool: in front of the face, or behind it by less than FACE_THICKNESS_M."""
        cells = np.round((points[:, :2] - self.origin) / RASTER_CELL_M).astype(np.int64)  # [M, 2] (col, row)
        rows, cols = self.triangle_map.shape
        on_map = (cells[:, 0] >= 0) & (cells[:, 0] < cols) & (cells[:, 1] >= 0) & (cells[:, 1] < rows)
        triangle = np.full(len(points), -1)
        triangle[on_map] = self.triangle_map[cells[on_map, 1], cells[on_map, 0]]
        inside = triangle >= 0
        corners = self.landmarks[self.triangles[triangle[inside]]]  # [M', 3, 3]
        # z of the triangle's plane at the point's (x, y)
        edge_1, edge_2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        normal = np.cross(edge_1, edge_2)
        offset = points[inside, :2] - corners[:, 0, :2]
        surface_z = (
            corners[:, 0, 2] - (normal[:, 0] * offset[:, 0] + normal[:, 1] * offset[:, 1]) / normal[:, 2]
        )
        covered = np.zeros(len(points), dtype=bool)
        covered[inside] = points[inside, 2] < surface_z + FACE_THICKNESS_M
        return covered

    def samples(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """The landmarks (a random subset when count < L), then area-weighted jittered samples on the triangles."""
        landmarks = self.landmarks
        if count <= len(landmarks):
            return landmarks[np.sort(rng.permutation(len(landmarks))[:count])]
        corners = landmarks[self.triangles]  # [T, 3, 3]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        areas = np.linalg.norm(normals, axis=1)
        normals = normals / np.maximum(areas, 1e-12)[:, None]
        extra = count - len(landmarks)
        chosen = rng.choice(len(corners), size=extra, p=areas / areas.sum())
        a, b = rng.random(extra), rng.random(extra)
        flip = a + b > 1  # fold the unit square onto the triangle: uniform barycentric coordinates
        a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
        tri = corners[chosen]
        points = tri[:, 0] + a[:, None] * (tri[:, 1] - tri[:, 0]) + b[:, None] * (tri[:, 2] - tri[:, 0])
        points += rng.uniform(-FACE_JITTER_M, FACE_JITTER_M, size=(extra, 1)) * normals[chosen]
        return np.concatenate([landmarks, points])


def _side_depth(landmarks: np.ndarray, shape: HeadProportions, side: float) -> float:
    """Mean z of the outermost tenth of the landmarks on one side (-1 image left, +1 image right)."""
    x = side * (landmarks[:, 0] - shape.centre_x)
    outer = x >= np.quantile(x, 0.9)
    return float(landmarks[outer, 2].mean())


def _rejection_sample(
    draw: Callable[[int], np.ndarray],
    count: int,
    rejected: Callable[[np.ndarray], np.ndarray],
    max_rounds: int = 64,
) -> np.ndarray:
    """`count` points from `draw(n) -> [n, 3]` that `rejected(points) -> [n] bool` does not reject."""
    kept: list[np.ndarray] = []
    have = 0
    for _ in range(max_rounds):
        if have >= count:
            break
        batch = draw(max(2 * (count - have), 16))
        batch = batch[~rejected(batch)]
        kept.append(batch)
        have += len(batch)
    if have < count:
        raise AvatarError(
            "could not place the head's Gaussians around these landmarks (the face covers the whole head shape)",
            fix="Check that the canonical landmarks are a face in metres in the head frame",
        )
    return np.concatenate(kept)[:count] if kept else np.zeros((0, 3))


def _unit_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    directions = rng.normal(size=(n, 3))
    return directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)


def _ellipsoid_shell(
    centre: np.ndarray, semi_axes: np.ndarray, n: int, *, rng: np.random.Generator
) -> np.ndarray:
    """n points between SHELL_INNER_RADIUS and 1 times the ellipsoid's surface, uniform in direction."""
    radii = rng.uniform(SHELL_INNER_RADIUS, 1.0, size=(n, 1))
    return centre + _unit_directions(n, rng) * radii * semi_axes


def _inside_ellipsoid(points: np.ndarray, centre: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    return (((points - centre) / semi_axes) ** 2).sum(1) < 1.0


def _cylinder_side(
    axis_xz: np.ndarray, radius: float, top: float, bottom: float, n: int, *, rng: np.random.Generator
) -> np.ndarray:
    """n points on the side of a vertical (y) cylinder, radii SHELL_INNER_RADIUS to 1 of `radius`."""
    angle = rng.uniform(0.0, 2 * math.pi, size=n)
    r = radius * rng.uniform(SHELL_INNER_RADIUS, 1.0, size=n)
    y = rng.uniform(top, bottom, size=n)
    return np.stack([axis_xz[0] + r * np.cos(angle), y, axis_xz[1] + r * np.sin(angle)], axis=1)


def _gaussians_at(means: np.ndarray) -> CanonicalGaussians:
    """Isotropic grey Gaussians at `means` [N, 3] sized by their nearest neighbours."""
    n = len(means)
    if n > 1:
        k = min(SCALE_NEIGHBOURS, n - 1)
        distances, _ = cKDTree(means).query(means, k=k + 1)
        spacing = distances.reshape(n, -1)[:, 1:].mean(1)
    else:
        spacing = np.full(n, SCALE_RANGE_M[1])
    scales = np.clip(spacing, *SCALE_RANGE_M)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    return CanonicalGaussians(
        means=torch.from_numpy(means),
        quats=quats,
        log_scales=torch.from_numpy(np.log(scales)).float()[:, None].expand(n, 3),
        opacity_logits=inverse_sigmoid(torch.full((n,), INITIAL_OPACITY)),
        color_logits=inverse_sigmoid(torch.full((n, 3), INITIAL_COLOR)),
    )
