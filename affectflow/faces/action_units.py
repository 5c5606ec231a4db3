"""Action-unit intensity ESTIMATES from landmark geometry (not FACS-trained detectors).

Each estimate is one distance measured on the aligned landmarks (eyes level, interocular distance 1,
see ``alignment.normalised_landmarks``), mapped linearly onto OpenFace's 0-5 intensity scale:
``5 * (measure - neutral) / span`` (sign flipped where the action shrinks the measure), clipped to
[0, 5]. ``neutral`` is a typical relaxed adult face and ``span`` the change of a strong action; both are
rough population constants checked on the real clips in ``../shared/data/faces``, with no per-person
baseline (OpenFace subtracts a per-video one) and no correction for head yaw or pitch. Expect them to
order frames of one face well and to compare different faces poorly.

Presence (``AUxx_c``) is intensity >= 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _eye_openness(points: np.ndarray) -> float:
    """Eye aspect ratio averaged over both eyes: lid distance over eye width (about 0.3 open, 0.05 shut)."""
    ratios = []
    for eye in (points[36:42], points[42:48]):
        lids = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        ratios.append(lids / (2 * np.linalg.norm(eye[0] - eye[3])))
    return float(np.mean(ratios))


def _inner_brow_height(points: np.ndarray) -> float:
    return float(np.mean([points[39, 1] - points[21, 1], points[42, 1] - points[22, 1]]))


def _outer_brow_height(points: np.ndarray) -> float:
    return float(np.mean([points[36, 1] - points[18, 1], points[45, 1] - points[25, 1]]))


def _brow_height(points: np.ndarray) -> float:
    """Mean height of the ten brow points above the eye line (y = 0 after alignment)."""
    return float(-points[17:27, 1].mean())


def _lip_corner_lift(points: np.ndarray) -> float:
    """How far the mouth corners sit above the middle of the lips (negative when they hang below)."""
    return float((points[51, 1] + points[57, 1]) / 2 - (points[48, 1] + points[54, 1]) / 2)


def _lip_gap(points: np.ndarray) -> float:
    return float(points[66, 1] - points[62, 1])


def _jaw_drop(points: np.ndarray) -> float:
    """Nose base to chin."""
    return float(points[8, 1] - points[33, 1])


@dataclass(frozen=True)
class GeometricAU:
    au: str
    measure: Callable[[np.ndarray], float]
    neutral: float
    span: float       # change of the measure at intensity 5; negative when the action shrinks it

    def intensity(self, points: np.ndarray) -> float:
        return float(np.clip(5.0 * (self.measure(points) - self.neutral) / self.span, 0.0, 5.0))


GEOMETRIC_AUS: tuple[GeometricAU, ...] = (
    GeometricAU("AU01", _inner_brow_height, 0.38, 0.15),
    GeometricAU("AU02", _outer_brow_height, 0.38, 0.15),
    GeometricAU("AU04", _brow_height, 0.36, -0.12),
    GeometricAU("AU05", _eye_openness, 0.30, 0.12),
    GeometricAU("AU12", _lip_corner_lift, 0.05, 0.20),
    GeometricAU("AU15", _lip_corner_lift, 0.00, -0.12),
    GeometricAU("AU25", _lip_gap, 0.02, 0.30),
    GeometricAU("AU26", _jaw_drop, 1.10, 0.35),
    GeometricAU("AU45", _eye_openness, 0.28, -0.22),
)
ESTIMATED_AUS: tuple[str, ...] = tuple(unit.au for unit in GEOMETRIC_AUS)


def estimate_aus(points: np.ndarray) -> np.ndarray:
    """Intensities (0-5) of ``ESTIMATED_AUS`` from aligned landmarks."""
    return np.array([unit.intensity(points) for unit in GEOMETRIC_AUS], dtype=np.float32)
