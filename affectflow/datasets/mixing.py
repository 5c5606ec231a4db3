"""A mixed dataset: several curated datasets trained together on one chosen class list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from affectflow.experiment import choose_classes, labelled_frame


def mixed_frame(frames: Mapping[str, pd.DataFrame],
                classes: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of every dataset in ``frames`` (name -> rows) whose emotion is in ``classes``.

    Returns the rows (with ``dataset``, ``[arousal, valence]`` filled) and the dropped count per
    emotion, which is also logged. Speakers become ``<dataset>:<speaker>``: two corpora's actor
    ``01`` are two people, and a speaker-independent split must keep them apart only from themselves.
    """
    frame = pd.concat([rows.assign(dataset=name, speaker=name + ":" + rows["speaker"].astype(str))
                       for name, rows in frames.items()], ignore_index=True)
    chosen = choose_classes(frame["emotion"], classes)
    dropped = frame.loc[~frame["emotion"].isin(chosen), "emotion"].value_counts()
    return labelled_frame(frame, chosen), {str(k): int(v) for k, v in dropped.items()}
