"""Face-mesh landmark groups and the masks and signals derived from them."""

from __future__ import annotations

import cv2
import numpy as np

# mediapipe face-mesh indices
FOREHEAD_TOP, CHIN = 10, 152
CHEEK_RIGHT_OF_IMAGE, CHEEK_LEFT_OF_IMAGE = 454, 234
LOWER_JAW = (361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132)  # fmt: skip
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)  # fmt: skip
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
LIP_INNER_TOP, LIP_INNER_BOTTOM, MOUTH_CORNER_A, MOUTH_CORNER_B = 13, 14, 78, 308
EYES = ((159, 145, 33, 133), (386, 374, 362, 263))  # upper lid, lower lid, corner, corner


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


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] lid distance over eye width, averaged over both eyes."""
    points = landmarks[..., :2]
    ratios = [
        np.linalg.norm(points[..., upper, :] - points[..., lower, :], axis=-1)
        / (np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1) + 1e-6)
        for upper, lower, a, b in EYES
    ]
    return (ratios[0] + ratios[1]) / 2


def mouth_openness(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, 3] -> [...] inner-lip distance over mouth width."""
    points = landmarks[..., :2]
    gap = np.linalg.norm(points[..., LIP_INNER_TOP, :] - points[..., LIP_INNER_BOTTOM, :], axis=-1)
    width = np.linalg.norm(points[..., MOUTH_CORNER_A, :] - points[..., MOUTH_CORNER_B, :], axis=-1)
    return gap / (width + 1e-6)
