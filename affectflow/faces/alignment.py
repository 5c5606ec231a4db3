"""Face alignment from 68 landmarks: a similarity transform that levels the eyes and fixes the scale.

The same transform gives the model's aligned grayscale crop and its pose-free landmark geometry, for
every backend: only the landmarks differ. Landmark indices follow the iBUG 68-point scheme (as dlib and
OpenFace do): 36-41 the eye on the image's left, 42-47 the other.
"""

from __future__ import annotations

import cv2
import numpy as np

# Where the eye centres land in the crop, as fractions of its side: chin and brows stay inside.
EYE_Y = 0.36
EYE_SPAN = 0.32  # interocular distance as a fraction of the crop side


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the eye on the image's left (36-41) and on its right (42-47)."""
    return points[36:42].mean(axis=0), points[42:48].mean(axis=0)


def face_frame(points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Origin (midpoint of the eyes), interocular distance and the 2x2 rotation that levels the eyes."""
    left, right = eye_centres(points)
    dx, dy = right - left
    distance = float(np.hypot(dx, dy))
    cos, sin = dx / distance, dy / distance
    return (left + right) / 2, distance, np.array([[cos, sin], [-sin, cos]])


def normalised_landmarks(points: np.ndarray) -> np.ndarray:
    """Landmarks in the face's own frame: eyes level, origin between them, unit interocular distance.

    Removes position, size and roll (roll stays available as ``pose_Rz``); x grows to the image's right,
    y downwards, so the chin sits near y = 1.8.
    """
    origin, distance, rotation = face_frame(points)
    return ((points - origin) @ rotation.T / distance).astype(np.float32)


def crop_transform(points: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 affine map from image pixels to the aligned ``size`` x ``size`` crop."""
    origin, distance, rotation = face_frame(points)
    scale = EYE_SPAN * size / distance
    linear = scale * rotation
    offset = np.array([0.5 * size, EYE_Y * size]) - linear @ origin
    return np.hstack([linear, offset[:, None]])


def aligned_crop(gray: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """The face cut from a grayscale frame, eyes level at fixed positions; outside the frame is black."""
    return cv2.warpAffine(gray, crop_transform(points, size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
