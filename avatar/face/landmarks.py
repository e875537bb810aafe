"""Every named set of mediapipe face-mesh landmark indices that capture, the model and the metrics use.

Indices are into the 478 landmarks of mediapipe's face mesh with iris refinement (468 + 10 iris points).
"Image-left" is the subject's right on a frontal face.
"""

from __future__ import annotations

NUM_LANDMARKS = 478

FOREHEAD_TOP, CHIN = 10, 152
CHEEK_RIGHT_OF_IMAGE, CHEEK_LEFT_OF_IMAGE = 454, 234
LOWER_JAW = (361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132)  # fmt: skip
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)  # fmt: skip
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
LIP_INNER_TOP, LIP_INNER_BOTTOM, MOUTH_CORNER_A, MOUTH_CORNER_B = 13, 14, 78, 308
# The inner lip contour as (upper, lower) pairs facing each other, image-left to image-right between the
# corners; the curves below run corner to corner through them.
INNER_LIP_PAIRS = ((191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324))  # fmt: skip
INNER_LIP_UPPER = (MOUTH_CORNER_A, *(upper for upper, _ in INNER_LIP_PAIRS), MOUTH_CORNER_B)
INNER_LIP_LOWER = (MOUTH_CORNER_A, *(lower for _, lower in INNER_LIP_PAIRS), MOUTH_CORNER_B)
# The landmarks on each lip, inner and outer contour, corners excluded.
UPPER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LOWER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324, 146, 91, 181, 84, 17, 314, 405, 321, 375)
EYES = ((159, 145, 33, 133), (386, 374, 362, 263))  # upper lid, lower lid, corner, corner
# The lid contours of both eyes between the corners (upper, then lower): they move when the eyes blink.
UPPER_EYELIDS = (246, 161, 160, 159, 158, 157, 173, 466, 388, 387, 386, 385, 384, 398)
LOWER_EYELIDS = (7, 163, 144, 145, 153, 154, 155, 249, 390, 373, 374, 380, 381, 382)
EYELIDS = UPPER_EYELIDS + LOWER_EYELIDS

# mediapipe's FACEMESH_LIPS, each contour in order around the mouth starting at the image-left corner: the
# landmarks the lip-sync distance (LMD) compares.
LIP_CONTOURS = OUTER_LIPS + INNER_LIPS

_CHIN_AND_CHEEKS = (18, 200, 199, 175, 83, 313, 201, 421, 208, 428, 57, 287, 186, 410, 212, 432, 214, 434)
# The landmarks that move with speech (jaw, lips, chin and lower cheeks): the model predicts their motion.
MOUTH_AND_JAW = tuple(sorted(set(LOWER_JAW + OUTER_LIPS + INNER_LIPS + _CHIN_AND_CHEEKS)))

# Landmarks that move little with expression: forehead, temples and the face side at ear level, the nose
# bridge and tip, eye corners. Not lips, jaw, cheeks, eyelids, eyebrows or nostril wings.
STABLE_LANDMARKS: tuple[int, ...] = (
    # forehead and glabella
    10, 109, 67, 338, 297, 151, 108, 337, 69, 299, 9, 103, 332,
    # temples and face side at ear level
    54, 284, 21, 251, 162, 389, 127, 356, 234, 454,
    # nose bridge, sides, tip and base
    168, 6, 197, 195, 5, 4, 1, 2, 122, 351, 196, 419, 45, 275, 220, 440,
    # eye corners
    33, 133, 263, 362, 130, 359, 243, 463,
)  # fmt: skip

# (image-left, image-right) on a frontal face, i.e. (subject's right, subject's left)
MIRROR_PAIRS = (
    (33, 263), (133, 362), (130, 359), (243, 463), (234, 454), (127, 356), (162, 389), (21, 251), (54, 284),
    (103, 332), (67, 297), (109, 338), (108, 337), (69, 299), (122, 351), (196, 419), (45, 275), (220, 440),
)  # fmt: skip
EYE_OUTER_CORNERS = (33, 263)
GLABELLA, SUBNASALE = 9, 2
