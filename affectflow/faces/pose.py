"""Head pose from 2-D landmarks: ``solvePnP`` against a generic 3-D face, in OpenFace's conventions.

The 3-D face is the widely used six-point mean face (nose tip, chin, outer eye corners, mouth corners),
scaled to millimetres (outer eye corners 90 mm apart) and expressed in camera-like axes (x right, y down,
z away from the camera), centred on the points' mean. Without a calibrated camera the intrinsics are
OpenFace's defaults: focal length 500 px per 640 px of width (and per 480 px of height, averaged),
principal point at the image centre. Translation is therefore an estimate in mm, as OpenFace's is
without calibration; rotation is what the model uses.
"""

from __future__ import annotations

import cv2
import numpy as np

POSE_LANDMARKS = (30, 8, 36, 45, 48, 54)  # nose tip, chin, outer eye corners, mouth corners
_FACE_3D = np.array([
    (0.0, 0.0, 0.0),          # nose tip
    (0.0, 330.0, 65.0),       # chin
    (-225.0, -170.0, 135.0),  # outer corner of the eye on the image's left
    (225.0, -170.0, 135.0),   # outer corner of the other eye
    (-150.0, 150.0, 125.0),   # mouth corner, image's left
    (150.0, 150.0, 125.0),    # mouth corner, image's right
]) * 0.2
FACE_3D = np.ascontiguousarray(_FACE_3D - _FACE_3D.mean(axis=0))


def camera_matrix(width: int, height: int) -> np.ndarray:
    """OpenFace's default intrinsics for an uncalibrated ``width`` x ``height`` video."""
    focal = (500.0 * width / 640.0 + 500.0 * height / 480.0) / 2.0
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def euler_xyz(rotation: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) in radians with ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``, as OpenFace reports them."""
    pitch = np.arctan2(-rotation[1, 2], rotation[2, 2])
    yaw = np.arcsin(np.clip(rotation[0, 2], -1.0, 1.0))
    roll = np.arctan2(-rotation[0, 1], rotation[0, 0])
    return np.array([pitch, yaw, roll])


def head_pose(points: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """``[Tx, Ty, Tz, Rx, Ry, Rz]`` (mm, radians) from 68 landmarks in source pixels; None if no solution."""
    image_points = np.ascontiguousarray(points[list(POSE_LANDMARKS)], dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(FACE_3D, image_points, camera_matrix(width, height), None,
                                  flags=cv2.SOLVEPNP_SQPNP)
    if not ok or tvec[2, 0] <= 0:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    return np.concatenate([tvec[:, 0], euler_xyz(rotation)])
