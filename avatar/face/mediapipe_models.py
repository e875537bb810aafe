"""The mediapipe models capture and the metrics use, all shipped inside the mediapipe 0.10.x wheel (no download)."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mediapipe as mp  # noqa: E402
import numpy as np  # noqa: E402

from avatar.face.landmarks import NUM_LANDMARKS  # noqa: E402


def face_detector(full_range: bool = True, min_confidence: float = 0.5):
    """Face boxes anywhere in a frame; the full-range model finds small faces in tall phone frames."""
    return mp.solutions.face_detection.FaceDetection(
        model_selection=1 if full_range else 0, min_detection_confidence=min_confidence
    )


def face_mesh(static_images: bool, max_faces: int = 2):
    """478 landmarks (468 + 10 iris points) per face."""
    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=static_images,
        max_num_faces=max_faces,
        refine_landmarks=True,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    )


def person_segmenter():
    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


def detect_face_boxes(detector, image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [F, 5] boxes (x0, y0, x1, y1, score) in pixels."""
    height, width = image.shape[:2]
    result = detector.process(image)
    boxes = []
    for detection in result.detections or []:
        box = detection.location_data.relative_bounding_box
        x0, y0 = box.xmin * width, box.ymin * height
        boxes.append((x0, y0, x0 + box.width * width, y0 + box.height * height, detection.score[0]))
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 5)


def mesh_landmarks(mesh, image: np.ndarray) -> np.ndarray:
    """[S, S, 3] uint8 RGB square -> [F, 478, 3] landmarks in pixels (z in the same pixel scale as x)."""
    size = image.shape[1]
    result = mesh.process(image)
    faces = [
        [(p.x * size, p.y * image.shape[0], p.z * size) for p in face.landmark]
        for face in result.multi_face_landmarks or []
    ]
    return np.asarray(faces, dtype=np.float32).reshape(-1, NUM_LANDMARKS, 3)


def person_mask(segmenter, image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] float32 in [0, 1], 1 on the person."""
    return segmenter.process(image).segmentation_mask.astype(np.float32)
