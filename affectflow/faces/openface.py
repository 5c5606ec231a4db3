"""The OpenFace backend: runs the external ``FeatureExtraction`` binary and parses its CSV.

OpenFace is not a Python package and no registry ships it: install it yourself and point
``AFFECTFLOW_OPENFACE_BIN`` at ``FeatureExtraction`` (or put it on ``PATH``). It is run as an argument
list (no shell) on the whole clip, with ``-aus -2Dfp -pose -gaze``, into a temporary folder, with a
timeout (``AFFECTFLOW_OPENFACE_TIMEOUT`` seconds, default 300); the rows of our sampled frames are kept.
A missing binary is a configuration error (``OpenFaceUnavailable``), raised before any clip is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.config import PreprocessConfig
from affectflow.faces.columns import FACE_COLUMNS
from affectflow.faces.table import blank_table
from affectflow.media import SampledVideo

OPENFACE_BIN_ENV = "AFFECTFLOW_OPENFACE_BIN"
OPENFACE_TIMEOUT_ENV = "AFFECTFLOW_OPENFACE_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
BINARY_NAME = "FeatureExtraction"
OPENFACE_ARGS = ("-aus", "-2Dfp", "-pose", "-gaze")
REQUIRED_COLUMNS = ("frame", "success")


class OpenFaceUnavailable(RuntimeError):
    """OpenFace cannot be run here: the binary is missing or not executable (a configuration problem)."""


class OpenFaceError(RuntimeError):
    """OpenFace ran on a clip and failed (exit status, timeout, no or unreadable CSV)."""


def find_binary() -> Path:
    """``$AFFECTFLOW_OPENFACE_BIN``, else ``FeatureExtraction`` on ``PATH``; raises ``OpenFaceUnavailable``."""
    configured = os.environ.get(OPENFACE_BIN_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise OpenFaceUnavailable(f"{OPENFACE_BIN_ENV}={configured} is not an executable file: point it "
                                      f"at OpenFace's {BINARY_NAME} binary, or use --face-backend landmarks")
        return path
    found = shutil.which(BINARY_NAME)
    if found is None:
        raise OpenFaceUnavailable(f"OpenFace's {BINARY_NAME} binary was not found: set {OPENFACE_BIN_ENV} to "
                                  f"its path or put it on PATH, or use --face-backend landmarks (built in)")
    return Path(found)


def timeout_s() -> float:
    return float(os.environ.get(OPENFACE_TIMEOUT_ENV, DEFAULT_TIMEOUT_S))


def read_openface_csv(path: str | Path) -> pd.DataFrame:
    """An OpenFace CSV with clean column names (OpenFace writes ``frame, timestamp, ...``: all but the
    first name start with a space). Every column is kept; raises ``OpenFaceError`` if it is not one."""
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise OpenFaceError(f"{path}: not an OpenFace CSV ({err})") from err
    frame.columns = [str(name).strip() for name in frame.columns]
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise OpenFaceError(f"{path}: not an OpenFace CSV (no column {', '.join(missing)})")
    return frame


def run_openface(binary: Path, clip: Path, out_dir: Path, timeout: float) -> Path:
    """Run ``FeatureExtraction`` on one clip; the CSV it wrote."""
    cmd = [str(binary), "-f", str(clip), "-out_dir", str(out_dir), *OPENFACE_ARGS]
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise OpenFaceError(f"{clip}: OpenFace did not finish within {timeout:g} s") from err
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip().splitlines()
        raise OpenFaceError(f"{clip}: OpenFace exited with status {result.returncode}"
                            f" ({tail[-1] if tail else 'no message'})")
    written = sorted(out_dir.glob("*.csv"))
    if not written:
        raise OpenFaceError(f"{clip}: OpenFace wrote no CSV")
    return written[0]


def sampled_rows(frame: pd.DataFrame, video: SampledVideo) -> np.ndarray:
    """The canonical table rows of our sampled frames (OpenFace numbers frames from 1).

    Where OpenFace counted frames differently, the nearest frame number is taken; an empty CSV gives
    rows with no face.
    """
    canonical = frame.reindex(columns=list(FACE_COLUMNS)).astype(np.float32)
    if canonical.empty:
        return blank_table(video, len(video.indices))
    numbers = canonical["frame"].to_numpy()
    nearest = np.abs(numbers[None, :] - (video.indices[:, None] + 1)).argmin(axis=1)
    return canonical.to_numpy()[nearest]


class OpenFaceBackend:
    """Looks the binary up per clip, so a changed ``AFFECTFLOW_OPENFACE_BIN`` takes effect at once."""

    name = "openface"

    def table(self, video: SampledVideo, path: Path, cfg: PreprocessConfig) -> np.ndarray:
        binary = find_binary()
        with tempfile.TemporaryDirectory(prefix="affectflow-openface-") as out_dir:
            csv = run_openface(binary, Path(path).resolve(), Path(out_dir), timeout_s())
            return sampled_rows(read_openface_csv(csv), video)
