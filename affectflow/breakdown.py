"""A model's answers on a labelled set broken down: overall, per speaker and group, per modality.

The test split of every training run and ``affectflow evaluate`` on any labelled batch report the same
tables through ``break_down``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import pandas as pd

from affectflow.ablation import ablate, ablation_markdown
from affectflow.arrays import Arrays
from affectflow.evaluation import predict_arrays, prediction_frame, score_predictions
from affectflow.groups import DEFAULT_GROUPS, group_metrics, groups_markdown


@dataclass
class Breakdown:
    metrics: dict[str, float]           # over every clip
    predictions: pd.DataFrame           # one row per clip: labels beside the model's answers
    groups: pd.DataFrame | None         # ``groups.group_metrics`` rows, when groups were asked for
    ablation: pd.DataFrame | None       # ``ablation.ablate`` rows, when asked for

    def markdown(self, title: str) -> dict[str, str]:
        """Markdown tables by report file name: ``by_group.md`` and ``ablation.md`` where computed."""
        tables = {}
        if self.groups is not None:
            tables["by_group.md"] = groups_markdown(self.groups, f"{title} by group")
        if self.ablation is not None:
            tables["ablation.md"] = ablation_markdown(self.ablation, f"{title}, modality ablation")
        return tables


def break_down(model: keras.Model, frame: pd.DataFrame, arrays: Arrays, classes: Sequence[str],
               groups: Sequence[str] | None = DEFAULT_GROUPS, ablation: bool = True) -> Breakdown:
    """Score ``model`` on ``arrays`` (ready for it, one per row of ``frame``, in order): metrics over all
    clips, per value of each ``groups`` column the frame has, and with each modality hidden."""
    predictions = prediction_frame(frame, predict_arrays(model, arrays), classes)
    metrics = score_predictions(predictions, classes)[0]
    table = group_metrics(predictions, classes, groups) if groups else None
    return Breakdown(metrics, predictions, table, ablate(model, arrays, classes) if ablation else None)
