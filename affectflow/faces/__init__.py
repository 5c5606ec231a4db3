"""Face analysis behind one interface: a backend turns sampled frames into OpenFace-style rows.

Backends (``PreprocessConfig.face_backend``):

- ``landmarks`` (default, built in): dlib face detection, 68 landmarks, solvePnP head pose and
  geometric action-unit estimates (``affectflow.faces.landmarks``);
- ``openface``: the external OpenFace ``FeatureExtraction`` binary (``affectflow.faces.openface``);
- ``none``: no face work; every frame is "no face".

Whatever ran, the result has the same layout: the per-frame table in OpenFace's columns
(``FACE_COLUMNS``, NaN where a backend does not estimate a column), and the model's inputs derived from
it (``FACE_FEATURES`` vector, aligned grayscale crop and face-present mask per sampled frame). A clip or
frame without a face is normal data: zeros and mask 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from affectflow.config import PreprocessConfig
from affectflow.errors import UserError
from affectflow.faces.columns import FACE_COLUMNS
from affectflow.faces.model_inputs import FACE_FEATURES, face_inputs
from affectflow.faces.table import blank_table, to_dataframe
from affectflow.media import SampledVideo

BACKENDS = ("landmarks", "openface", "none")

__all__ = ["BACKENDS", "FACE_COLUMNS", "FACE_FEATURES", "FaceBackend", "FaceBackendError", "FaceData",
           "analyse_faces", "blank_faces", "check_backend", "get_backend", "to_dataframe"]


class FaceBackendError(UserError, RuntimeError):
    """A face backend that cannot run here (unknown name, OpenFace missing): a configuration error."""


class FaceBackend(Protocol):
    name: str

    def table(self, video: SampledVideo, path: Path, cfg: PreprocessConfig) -> np.ndarray:
        """``(len(video.frames), len(FACE_COLUMNS))`` float32 rows, one per sampled frame."""


class NoFaceBackend:
    """Does no face work: every frame reads "no face"."""

    name = "none"

    def table(self, video: SampledVideo, path: Path, cfg: PreprocessConfig) -> np.ndarray:
        return blank_table(video, len(video.frames))


@functools.cache
def _landmarks_backend() -> FaceBackend:
    from affectflow.faces.landmarks import LandmarksBackend

    return LandmarksBackend()


def check_backend(name: str) -> None:
    """Raise ``FaceBackendError`` with the reason when backend ``name`` cannot run on this machine."""
    if name not in BACKENDS:
        raise FaceBackendError(f"unknown face backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "openface":
        from affectflow.faces.openface import OpenFaceUnavailable, find_binary

        try:
            find_binary()
        except OpenFaceUnavailable as err:
            raise FaceBackendError(str(err)) from err


def get_backend(name: str) -> FaceBackend:
    """The backend called ``name`` (the landmarks models load once per process)."""
    check_backend(name)
    if name == "landmarks":
        return _landmarks_backend()
    if name == "openface":
        from affectflow.faces.openface import OpenFaceBackend

        return OpenFaceBackend()
    return NoFaceBackend()


@dataclass
class FaceData:
    """One clip's face analysis: the OpenFace-style table and the model's inputs derived from it."""

    table: np.ndarray      # (T, len(FACE_COLUMNS)) float32
    features: np.ndarray   # (T, len(FACE_FEATURES)) float32
    crops: np.ndarray      # (T, crop, crop) uint8 grayscale, aligned
    present: np.ndarray    # (T,) float32, 1.0 where a face was found


def blank_faces(cfg: PreprocessConfig) -> FaceData:
    """No face in any frame: a clip without video."""
    count, crop = cfg.num_frames, cfg.face_crop_size
    return FaceData(blank_table(None, count), np.zeros((count, len(FACE_FEATURES)), dtype=np.float32),
                    np.zeros((count, crop, crop), dtype=np.uint8), np.zeros(count, dtype=np.float32))


def analyse_faces(video: SampledVideo | None, path: str | Path, cfg: PreprocessConfig) -> FaceData:
    """Run ``cfg.face_backend`` on the sampled frames; raises ``FaceBackendError`` if it cannot run."""
    if video is None:
        return blank_faces(cfg)
    table = get_backend(cfg.face_backend).table(video, Path(path), cfg)
    features, crops, present = face_inputs(table, video, cfg.face_crop_size)
    return FaceData(table, features, crops, present)
