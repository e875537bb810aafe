"""Image regions derived from face-mesh landmarks: head, face hull, mouth, and the per-frame segmentation masks."""

from __future__ import annotations

import cv2
import numpy as np

from avatar.face.landmarks import (
    CHEEK_LEFT_OF_IMAGE,
    CHEEK_RIGHT_OF_IMAGE,
    CHIN,
    FOREHEAD_TOP,
    INNER_LIPS,
    LOWER_JAW,
    MOUTH_CORNER_A,
    MOUTH_CORNER_B,
    OUTER_LIPS,
)


def _fill(polygon: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255, lineType=cv2.LINE_8)
    return mask


def head_region(landmarks: np.ndarray, size: int) -> np.ndarray:
    """[478, 3] -> [size, size] uint8: where the head (face, hair, ears) can be: above the lower jaw line, which
    runs from ear lobe to ear lobe, and within a band around the face wide enough for ears and hair."""
    points = landmarks[:, :2].astype(np.float64)
    up = points[FOREHEAD_TOP] - points[CHIN]
    face_length = np.linalg.norm(up) + 1e-6
    up /= face_length
    lateral = points[CHEEK_RIGHT_OF_IMAGE] - points[CHEEK_LEFT_OF_IMAGE]
    face_width = np.linalg.norm(lateral) + 1e-6
    lateral /= face_width
    right = points[LOWER_JAW[0]] + 0.4 * face_width * lateral
    left = points[LOWER_JAW[-1]] - 0.4 * face_width * lateral
    reach = 3.0 * face_length * up
    polygon = np.concatenate([points[list(LOWER_JAW)], [left, left + reach, right + reach, right]])
    return _fill(polygon, size)


def face_hull(landmarks: np.ndarray, size: int, margin_px: int = 3) -> np.ndarray:
    """[478, 3] -> [size, size] uint8: convex hull of all landmarks, grown by a margin."""
    hull = cv2.convexHull(np.round(landmarks[:, :2]).astype(np.int32))
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    if margin_px > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1,) * 2))
    return mask


def mouth_region(landmarks: np.ndarray, size: int, grow: float = 0.3) -> np.ndarray:
    """[478, 3] -> [size, size] uint8: the lips and what they enclose, grown by `grow` x the mouth width (the
    part of the face that moves with speech)."""
    outline = _fill(landmarks[list(OUTER_LIPS), :2], size)
    width = float(np.linalg.norm(landmarks[MOUTH_CORNER_A, :2] - landmarks[MOUTH_CORNER_B, :2]))
    radius = max(1, int(round(grow * width)))
    return cv2.dilate(outline, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))


def neck_band(head_mask: np.ndarray, landmarks: np.ndarray, width_px: int) -> np.ndarray:
    """[S, S] head mask (uint8, 255 inside) and [478, 3] landmarks -> [S, S] uint8: the band `width_px` either
    side of the head's outline below the mouth corners: the chin, the jaw and where the neck meets them, the
    seam between a head and a torso drawn apart."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width_px + 1,) * 2)
    inside = (head_mask > 127).astype(np.uint8) * 255
    band = cv2.subtract(cv2.dilate(inside, kernel), cv2.erode(inside, kernel))
    below = int(np.ceil(max(landmarks[MOUTH_CORNER_A, 1], landmarks[MOUTH_CORNER_B, 1])))
    band[: max(0, min(below, band.shape[0]))] = 0
    return band


def mouth_interior(landmarks: np.ndarray, size: int) -> np.ndarray:
    """[478, 3] -> [size, size] uint8: inside the inner lip contour."""
    return _fill(landmarks[list(INNER_LIPS), :2], size)


def segment_masks(person: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """person [S, S] uint8 soft matte, landmarks [478, 3] or None -> [S, S, 4] uint8 (person, head, torso, mouth).

    head = person above the jaw near the face, plus the face itself; torso = person minus head."""
    size = person.shape[0]
    on_person = np.where(person >= 128, 255, 0).astype(np.uint8)
    if landmarks is None:
        head = np.zeros_like(on_person)
        mouth = np.zeros_like(on_person)
    else:
        head = cv2.bitwise_or(
            cv2.bitwise_and(on_person, head_region(landmarks, size)), face_hull(landmarks, size)
        )
        mouth = mouth_interior(landmarks, size)
    torso = cv2.bitwise_and(on_person, cv2.bitwise_not(head))
    return np.stack([person, head, torso, mouth], axis=-1)
