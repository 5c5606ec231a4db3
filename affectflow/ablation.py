"""Modality ablations: one trained model scored with modalities hidden, to show what each contributes.

Hiding a modality sets its mask to 0, exactly what a clip without that modality looks like, so the
model (trained with modality dropout) answers from the rest. Views: ``all``, each modality alone
(``audio only``, ...) and, with three or more, each one left out (``without face``). A view is scored
on the clips that still carry at least one of its modalities (``n``); the others would be answered
from nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd

from affectflow.arrays import MODALITIES, Arrays, model_modalities
from affectflow.evaluation import evaluate
from affectflow.tables import markdown_table

# The metrics an ablation table shows, in this order, when the model has them.
ABLATION_METRICS: tuple[str, ...] = ("uar", "war", "macro_f1", "ccc_arousal", "ccc_valence", "ccc_mean")


def ablation_views(modalities: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """View name -> the modalities it keeps: all, each alone, and each left out when that differs."""
    views = {"all": tuple(modalities)}
    if len(modalities) > 1:
        views.update({f"{m} only": (m,) for m in modalities})
    if len(modalities) > 2:
        views.update({f"without {m}": tuple(o for o in modalities if o != m) for m in modalities})
    return views


def _carried(arrays: Arrays, modalities: Sequence[str]) -> np.ndarray:
    """Per clip: does it carry at least one of ``modalities``?"""
    masks = [arrays.inputs[MODALITIES[m][0]].reshape(len(arrays), -1).max(axis=1) > 0 for m in modalities]
    return np.logical_or.reduce(masks)


def ablate(model: keras.Model, arrays: Arrays, classes: Sequence[str]) -> pd.DataFrame:
    """One row per view: the modalities kept, ``n`` clips scored and the metrics.

    ``arrays`` must be ready for the model (``training.ready_for``); each view hides the other
    modalities by zeroing their masks.
    """
    modalities = model_modalities(model)
    rows = []
    for view, kept in ablation_views(modalities).items():
        hidden = arrays
        for modality in modalities:
            if modality not in kept:
                hidden = hidden.masked(modality)
        scored = _carried(arrays, kept)
        row = {"view": view, "modalities": "+".join(kept), "n": int(scored.sum())}
        if scored.any():
            metrics, _ = evaluate(model, hidden.subset(scored), classes)
            row.update({k: metrics[k] for k in ABLATION_METRICS if k in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_markdown(table: pd.DataFrame, title: str = "Modality ablation") -> str:
    """The ablation table in Markdown, three decimals; a view no clip could be scored on shows dashes."""
    metrics = [k for k in ABLATION_METRICS if k in table]
    return f"### {title}\n\n" + markdown_table(table, ["view", "modalities", "n", *metrics]) + "\n"
