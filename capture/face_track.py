"""From per-frame face-mesh detections to one continuous landmark track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FaceTrack:
    landmarks: np.ndarray  # [N, 478, 3] crop pixels, gaps filled
    found: np.ndarray  # [N] bool: the face mesh saw the tracked face in this frame
    interpolated: np.ndarray  # [N] bool: a short gap filled by interpolation
    multi_face_frames: list[int]  # frames where more than one face was seen

    @property
    def valid(self) -> np.ndarray:  # [N] bool
        return self.found | self.interpolated


def _box_size(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] the larger side of the landmarks' bounding box."""
    extent = landmarks[..., :2].max(-2) - landmarks[..., :2].min(-2)
    return extent.max(-1)


def select_largest_track(
    faces: np.ndarray,  # [N, F, 478, 3] up to F faces per frame
    counts: np.ndarray,  # [N] faces seen per frame
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Links faces across frames by proximity and keeps the track with the largest summed face size.

    Returns landmarks [N, 478, 3] (zeros where the track is absent), found [N] bool, multi-face frames."""
    num_frames = len(counts)
    track_of = np.full(faces.shape[:2], -1, dtype=np.int64)
    last_center: list[np.ndarray] = []
    last_size: list[float] = []
    for i in range(num_frames):
        taken: set[int] = set()
        for j in range(int(counts[i])):
            center = faces[i, j, :, :2].mean(0)
            size = float(_box_size(faces[i, j]))
            best, best_distance = -1, np.inf
            for track, (previous, previous_size) in enumerate(zip(last_center, last_size)):
                distance = float(np.linalg.norm(center - previous))
                if (
                    track not in taken
                    and distance < 0.5 * max(size, previous_size)
                    and distance < best_distance
                ):
                    best, best_distance = track, distance
            if best < 0:
                best = len(last_center)
                last_center.append(center)
                last_size.append(size)
            last_center[best], last_size[best] = center, size
            taken.add(best)
            track_of[i, j] = best
    landmarks = np.zeros((num_frames, *faces.shape[2:]), dtype=np.float32)
    found = np.zeros(num_frames, dtype=bool)
    if not last_center:
        return landmarks, found, []
    sizes = _box_size(faces)
    totals = [float(sizes[track_of == track].sum()) for track in range(len(last_center))]
    chosen = int(np.argmax(totals))
    frame_index, face_index = np.nonzero(track_of == chosen)
    landmarks[frame_index] = faces[frame_index, face_index]
    found[frame_index] = True
    multi_face_frames = [int(i) for i in np.nonzero(counts > 1)[0]]
    return landmarks, found, multi_face_frames


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[N] bool -> [(start, stop)] half-open ranges where mask is True."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def describe_frames(mask: np.ndarray, fps: float, limit: int = 8) -> str:
    """'frames 10-24 (0.40-0.96 s), ...' for the True runs of a mask."""
    parts = [
        f"{a}" + (f"-{b - 1}" if b - 1 > a else "") + f" ({a / fps:.2f}-{b / fps:.2f} s)"
        for a, b in runs(mask)
    ]
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return "frames " + ", ".join(parts[:limit]) + more


def fill_gaps(
    landmarks: np.ndarray, found: np.ndarray, max_gap: int, multi_face_frames: list[int]
) -> FaceTrack:
    """Interpolates gaps of at most `max_gap` frames between found frames linearly; longer gaps (and gaps at the
    clip's ends) hold the nearest found landmarks but stay invalid."""
    landmarks = landmarks.copy()
    interpolated = np.zeros_like(found)
    found_index = np.flatnonzero(found)
    if len(found_index) == 0:
        return FaceTrack(landmarks, found.copy(), interpolated, multi_face_frames)
    for start, stop in runs(~found):
        before, after = start - 1, stop
        if before >= 0 and after < len(found) and stop - start <= max_gap:
            weights = (np.arange(start, stop) - before) / (after - before)
            landmarks[start:stop] = (1 - weights)[:, None, None] * landmarks[before] + weights[
                :, None, None
            ] * landmarks[after]
            interpolated[start:stop] = True
        else:
            nearest = found_index[
                np.clip(np.searchsorted(found_index, np.arange(start, stop)), 0, len(found_index) - 1)
            ]
            nearest_before = found_index[
                np.clip(np.searchsorted(found_index, np.arange(start, stop)) - 1, 0, None)
            ]
            use_before = np.abs(nearest_before - np.arange(start, stop)) <= np.abs(
                nearest - np.arange(start, stop)
            )
            landmarks[start:stop] = landmarks[np.where(use_before, nearest_before, nearest)]
    return FaceTrack(landmarks, found.copy(), interpolated, multi_face_frames)
