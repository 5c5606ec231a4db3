"""Metrics per speaker and per demographic group: whom a model serves well and whom it fails.

Works on a ``prediction_frame`` (one row per clip: label columns beside the model's answers), so the
same table comes from a test split, a labelled batch or the pooled held-out predictions of
cross-validation. Groups are whatever columns the corpus provides: ``speaker`` always, ``sex`` (EmoDB,
CREMA-D, RAVDESS), ``age_band`` derived from CREMA-D's ``age``, ``race``, ``ethnicity``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from affectflow.evaluation import score_predictions
from affectflow.tables import markdown_table

DEFAULT_GROUPS: tuple[str, ...] = ("speaker", "sex", "age_band")
UNKNOWN = "unknown"
# The metrics a group table shows, in this order, when the model has them.
GROUP_METRICS: tuple[str, ...] = ("uar", "war", "macro_f1", "ccc_arousal", "ccc_valence", "mae_mean")


def age_band(age: object, width: int = 10) -> str:
    """``"20-29"`` for 20 <= age < 30 (with ``width=10``); ``"unknown"`` for missing or unreadable ages."""
    value = pd.to_numeric(pd.Series([age]), errors="coerce").iloc[0]
    if pd.isna(value):
        return UNKNOWN
    low = int(value // width * width)
    return f"{low}-{low + width - 1}"


def with_age_band(frame: pd.DataFrame, width: int = 10) -> pd.DataFrame:
    """``frame`` plus an ``age_band`` column where it has an ``age`` column (otherwise unchanged)."""
    if "age" not in frame:
        return frame
    return frame.assign(age_band=[age_band(a, width) for a in frame["age"]])


def metrics_by(predictions: pd.DataFrame, column: str, classes: Sequence[str]) -> pd.DataFrame:
    """One row per value of ``column`` (missing values form the group ``unknown``): n and metrics.

    UAR within a group averages over the classes that group has, so a speaker who never acted one
    emotion is not penalised for it.
    """
    values = predictions[column].astype("string").fillna(UNKNOWN)
    rows = []
    for value in sorted(values.unique()):
        metrics, _ = score_predictions(predictions[(values == value).to_numpy()], classes)
        rows.append({"group": column, "value": value, "n": int(metrics["n"]),
                     **{k: metrics[k] for k in GROUP_METRICS if k in metrics}})
    return pd.DataFrame(rows)


def group_metrics(predictions: pd.DataFrame, classes: Sequence[str],
                  columns: Sequence[str] = DEFAULT_GROUPS) -> pd.DataFrame:
    """``metrics_by`` for each requested column the predictions have (``age_band`` derived from ``age``).

    Columns the corpus does not provide are skipped; ask for one explicitly and it is reported as
    missing by ``missing_groups``.
    """
    predictions = with_age_band(predictions)
    tables = [metrics_by(predictions, column, classes) for column in columns if column in predictions]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["group", "value", "n"])


def missing_groups(predictions: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The requested group columns that neither the predictions nor ``age`` (for ``age_band``) provide."""
    available = set(predictions.columns) | ({"age_band"} if "age" in predictions else set())
    return [c for c in columns if c not in available]


def groups_markdown(table: pd.DataFrame, title: str = "Metrics by group") -> str:
    """One Markdown table: group, value, n and the metrics, three decimals."""
    metrics = [k for k in GROUP_METRICS if k in table]
    return f"### {title}\n\n" + markdown_table(table, ["group", "value", "n", *metrics]) + "\n"
