"""The label contract: canonical emotions, the arousal/valence table and the label CSV columns.

One order everywhere: ``[arousal, valence]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

AFFECT_DIMENSIONS: tuple[str, str] = ("arousal", "valence")

# Canonical vocabulary shared by every corpus adapter (each maps its own codes onto these names).
EMOTIONS: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
    "contempt", "anxiety", "helplessness", "disappointment", "boredom", "calm",
)

# (arousal, valence) per emotion, in [-1, 1], for corpora without continuous labels.
# The six basic emotions use the original project's table (its eNTERFACE notebook, which had the
# order right); the others are placed on Russell's circumplex (Russell 1980, "A circumplex model of
# affect"; Scherer 2005, "What are emotions?" figure 2) at the same scale. Neutral is the origin.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "anger": (0.8, -0.6),
    "disgust": (0.6, -0.6),
    "fear": (0.9, -0.6),
    "happiness": (0.7, 0.8),
    "sadness": (-0.4, -0.7),
    "surprise": (0.9, 0.4),
    "neutral": (0.0, 0.0),
    "contempt": (0.3, -0.5),
    "anxiety": (0.6, -0.5),
    "helplessness": (-0.3, -0.6),
    "disappointment": (-0.2, -0.6),
    "boredom": (-0.6, -0.3),
    "calm": (-0.6, 0.4),
}

# Label CSV contract (one row per clip). ``path`` is relative to the batch folder.
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "dataset", "speaker", "emotion")
OPTIONAL_COLUMNS: tuple[str, ...] = ("arousal", "valence", "intensity", "split")
LABELS_FILENAME = "labels.csv"
# Ids and labels of the contract that become folder names, manifest values and report cells: none may hold a
# control character (C0 such as NUL, tab, CR, LF; DEL; C1; the Unicode line and paragraph separators), which
# would cut a line of a report or log, end a C string early or make two ids look alike. The label suite
# (expectations/labels.json) refuses them with this pattern; a test checks that the two agree.
TEXT_COLUMNS: tuple[str, ...] = ("path", "dataset", "speaker", "emotion", "split")
CONTROL_CHARACTERS = "[\x00-\x1f\x7f-\x9f\u2028\u2029]"


def affect_of(emotion: str, intensity: float = 1.0) -> tuple[float, float]:
    """``(arousal, valence)`` from the table; intensity scales arousal (clipped to [-1, 1]).

    Unknown emotions raise ``KeyError`` instead of silently becoming (0, 0).
    """
    arousal, valence = CIRCUMPLEX[emotion]
    return max(-1.0, min(1.0, arousal * intensity)), valence


def choose_classes(emotions: pd.Series, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The requested class list, or the dataset's emotions in canonical vocabulary order."""
    if classes:
        unknown = sorted(set(classes) - set(EMOTIONS))
        if unknown:
            raise ValueError(f"unknown classes {unknown}; the canonical vocabulary is {list(EMOTIONS)}")
        return tuple(classes)
    present = set(emotions)
    return tuple(e for e in EMOTIONS if e in present)


def labelled_frame(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Rows of the chosen classes with ``[arousal, valence]`` filled from the circumplex where missing.

    Dropped classes are logged with their counts, never silently.
    """
    keep = frame["emotion"].isin(classes)
    if (~keep).any():
        log.warning("dropping %d clips outside the class list: %s", int((~keep).sum()),
                    frame.loc[~keep, "emotion"].value_counts().to_dict())
    frame = frame.loc[keep].copy()
    for dim in AFFECT_DIMENSIONS:
        if dim not in frame:
            frame[dim] = np.nan
    intensity = frame["intensity"] if "intensity" in frame else pd.Series(1.0, index=frame.index)
    table = [affect_of(e, 1.0 if pd.isna(i) else float(i)) for e, i in zip(frame["emotion"], intensity)]
    for j, dim in enumerate(AFFECT_DIMENSIONS):
        frame[dim] = frame[dim].astype(float).fillna(pd.Series([t[j] for t in table], index=frame.index))
    return frame.reset_index(drop=True)
