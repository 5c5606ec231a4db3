"""The per-frame face table: one row per sampled frame, one float column per OpenFace column.

Stored as a float32 array in each feature record (``FACE_COLUMNS`` order) and turned into a DataFrame
with ``to_dataframe`` for people and downstream code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from affectflow.faces.columns import COLUMN_INDEX, FACE_COLUMNS, FRAME_COLUMNS
from affectflow.media import SampledVideo

_INTEGER_COLUMNS = ("frame", "success")


def blank_table(video: SampledVideo | None, count: int, estimated: tuple[str, ...] = ()) -> np.ndarray:
    """Rows for ``count`` sampled frames with no face found.

    ``frame`` (1-based, as OpenFace counts) and ``timestamp`` come from the video when there is one;
    ``confidence`` and ``success`` are 0, the ``estimated`` columns 0 and every other column NaN.
    """
    table = np.full((count, len(FACE_COLUMNS)), np.nan, dtype=np.float32)
    for name in (*FRAME_COLUMNS[2:], *estimated):
        table[:, COLUMN_INDEX[name]] = 0.0
    if video is not None:
        table[:, COLUMN_INDEX["frame"]] = video.indices + 1
        table[:, COLUMN_INDEX["timestamp"]] = video.indices / video.fps if video.fps > 0 else 0.0
    return table


def to_dataframe(table: np.ndarray) -> pd.DataFrame:
    """The table with OpenFace's column names; ``frame`` and ``success`` as integers where known."""
    frame = pd.DataFrame(table, columns=list(FACE_COLUMNS))
    for name in _INTEGER_COLUMNS:
        frame[name] = frame[name].astype("Int64")
    return frame
