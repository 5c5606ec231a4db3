"""What the model sees of the face, from the per-frame table: a feature vector, an aligned crop, a mask.

Computed from OpenFace's columns alone, so every backend yields the same layout. Per sampled frame,
``FACE_FEATURES`` (151 values):

- ``pose_Rx, pose_Ry, pose_Rz``: head rotation in radians (pitch, yaw, roll);
- ``pose_Tx/Tz, pose_Ty/Tz``: where the head is in the view (scale-free), ``pose_Tz_m``: its distance in
  metres (rough without camera calibration);
- ``AUxx_r/5`` for the estimated action units (``ESTIMATED_AUS``), OpenFace's 0-5 scale divided by 5;
- ``shape_x_0..67, shape_y_0..67``: landmarks with the eyes level, the origin between them and unit
  interocular distance (``alignment.normalised_landmarks``).

A frame without a face (``success`` 0) gets zeros, a black crop and mask 0.
"""

from __future__ import annotations

import cv2
import numpy as np

from affectflow.faces.action_units import ESTIMATED_AUS
from affectflow.faces.alignment import aligned_crop, normalised_landmarks
from affectflow.faces.columns import (
    COLUMN_INDEX,
    LANDMARK_COUNT,
    POSE_ROTATION,
    X_COLUMNS,
    Y_COLUMNS,
    column_slice,
)
from affectflow.media import SampledVideo

POSE_FEATURES = (*POSE_ROTATION, "pose_Tx/Tz", "pose_Ty/Tz", "pose_Tz_m")
AU_FEATURES = tuple(f"{au}_r/5" for au in ESTIMATED_AUS)
SHAPE_FEATURES = (tuple(f"shape_x_{i}" for i in range(LANDMARK_COUNT))
                  + tuple(f"shape_y_{i}" for i in range(LANDMARK_COUNT)))
FACE_FEATURES: tuple[str, ...] = POSE_FEATURES + AU_FEATURES + SHAPE_FEATURES

_ROTATION = column_slice(POSE_ROTATION)
_TX, _TY, _TZ = (COLUMN_INDEX[name] for name in ("pose_Tx", "pose_Ty", "pose_Tz"))
_AU_R = column_slice(tuple(f"{au}_r" for au in ESTIMATED_AUS))
_X, _Y = column_slice(X_COLUMNS), column_slice(Y_COLUMNS)


def face_present(table: np.ndarray) -> np.ndarray:
    """1.0 where the backend found a face (``success`` 1), else 0.0."""
    return (np.nan_to_num(table[:, COLUMN_INDEX["success"]]) > 0.5).astype(np.float32)


def landmark_points(row: np.ndarray) -> np.ndarray:
    """The row's 68 landmarks as (x, y) source pixels."""
    return np.stack([row[_X], row[_Y]], axis=1).astype(np.float64)


def feature_vector(row: np.ndarray) -> np.ndarray:
    """``FACE_FEATURES`` of one row that has a face; NaN (a column the backend did not fill) becomes 0."""
    tz = row[_TZ] if row[_TZ] > 0 else np.nan
    pose = [*row[_ROTATION], row[_TX] / tz, row[_TY] / tz, row[_TZ] / 1000.0]
    shape = normalised_landmarks(landmark_points(row))
    vector = np.concatenate([pose, row[_AU_R] / 5.0, shape[:, 0], shape[:, 1]])
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def face_inputs(table: np.ndarray, video: SampledVideo, crop_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features (T, F) float32, crops (T, crop, crop) uint8, present (T,) float32)``.

    Crops are cut from the working frames, so landmarks (source pixels) are scaled onto them.
    """
    present = face_present(table)
    features = np.zeros((len(table), len(FACE_FEATURES)), dtype=np.float32)
    crops = np.zeros((len(table), crop_size, crop_size), dtype=np.uint8)
    for i in np.flatnonzero(present):
        features[i] = feature_vector(table[i])
        gray = cv2.cvtColor(video.frames[i], cv2.COLOR_RGB2GRAY)
        crops[i] = aligned_crop(gray, landmark_points(table[i]) * video.scale, crop_size)
    return features, crops, present
