"""OpenFace's per-frame column names: the one table layout every face backend writes.

These are the columns OpenFace's ``FeatureExtraction -aus -2Dfp -pose -gaze`` writes in the layout of
``../shared/data/faces/OpenFace_Test.csv`` (the 2.0 layout). OpenFace 2.2 adds ``face_id``,
``gaze_angle_*`` and eye landmarks; the parser keeps such extras, the canonical table drops them. A
backend that does not estimate a column leaves it NaN; a frame without a face has ``success`` 0 and
zeros in the columns the backend does estimate (as OpenFace writes them).
"""

from __future__ import annotations

LANDMARK_COUNT = 68

FRAME_COLUMNS = ("frame", "timestamp", "confidence", "success")
GAZE_COLUMNS = tuple(f"gaze_{eye}_{axis}" for eye in (0, 1) for axis in "xyz")
POSE_TRANSLATION = ("pose_Tx", "pose_Ty", "pose_Tz")   # millimetres, camera coordinates
POSE_ROTATION = ("pose_Rx", "pose_Ry", "pose_Rz")      # radians: pitch, yaw, roll
POSE_COLUMNS = POSE_TRANSLATION + POSE_ROTATION
X_COLUMNS = tuple(f"x_{i}" for i in range(LANDMARK_COUNT))  # source-video pixels
Y_COLUMNS = tuple(f"y_{i}" for i in range(LANDMARK_COUNT))
LANDMARK_COLUMNS = X_COLUMNS + Y_COLUMNS

# OpenFace's action units: intensities (0-5) and presence (0/1); AU28 has presence only.
AU_INTENSITY = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
                "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")
AU_PRESENCE = AU_INTENSITY[:-1] + ("AU28", "AU45")
AU_NAMES = {"AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer",
            "AU05": "upper lid raiser", "AU06": "cheek raiser", "AU07": "lid tightener", "AU09": "nose wrinkler",
            "AU10": "upper lip raiser", "AU12": "lip corner puller", "AU14": "dimpler",
            "AU15": "lip corner depressor", "AU17": "chin raiser", "AU20": "lip stretcher",
            "AU23": "lip tightener", "AU25": "lips part", "AU26": "jaw drop", "AU28": "lip suck",
            "AU45": "blink"}
AU_R_COLUMNS = tuple(f"{au}_r" for au in AU_INTENSITY)
AU_C_COLUMNS = tuple(f"{au}_c" for au in AU_PRESENCE)

FACE_COLUMNS: tuple[str, ...] = (FRAME_COLUMNS + GAZE_COLUMNS + POSE_COLUMNS + LANDMARK_COLUMNS
                                 + AU_R_COLUMNS + AU_C_COLUMNS)
COLUMN_INDEX = {name: i for i, name in enumerate(FACE_COLUMNS)}


def column_slice(names: tuple[str, ...]) -> list[int]:
    """Positions of ``names`` in ``FACE_COLUMNS``."""
    return [COLUMN_INDEX[name] for name in names]
