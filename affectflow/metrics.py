"""Evaluation metrics over a whole evaluation set (numpy), and the CCC loss used in training (TF).

Every metric here is computed once over all clips, never averaged over batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from affectflow.labels import AFFECT_DIMENSIONS

# The figures a report or a log line leads with (those a model has); per-class ones follow in full reports.
HEADLINE_METRICS: tuple[str, ...] = ("n", "uar", "war", "macro_f1", "ccc_arousal", "ccc_valence", "ccc_mean",
                                     "mae_arousal", "mae_valence")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of clips with true class ``i`` predicted as ``j``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def war(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted average recall = accuracy = mean(y_true == y_pred)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def per_class_recall(matrix: np.ndarray) -> np.ndarray:
    """recall_c = C[c, c] / sum_j C[c, j]; NaN for classes absent from the ground truth."""
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)


def per_class_precision(matrix: np.ndarray) -> np.ndarray:
    """precision_c = C[c, c] / sum_i C[i, c]; 0 where class ``c`` is never predicted."""
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted > 0, np.diag(matrix) / np.maximum(predicted, 1), 0.0)


def uar(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted average recall = mean over classes present in ``y_true`` of their recall."""
    recall = per_class_recall(confusion(y_true, y_pred, num_classes))
    return float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")


def per_class_f1(matrix: np.ndarray) -> np.ndarray:
    """F1_c = 2 P_c R_c / (P_c + R_c), 0 when both are 0 (scikit-learn's zero_division=0)."""
    precision = per_class_precision(matrix)
    recall = np.nan_to_num(per_class_recall(matrix))
    denom = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's default labels)."""
    matrix = confusion(y_true, y_pred, num_classes)
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    return float(per_class_f1(matrix)[present].mean()) if present.any() else float("nan")


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Concordance correlation coefficient (Lin 1989) of two 1-D series.

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2), population moments.
    Two constant, equal series give 1; otherwise a zero denominator gives 0.
    """
    x, y = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    mean_x, mean_y = x.mean(), y.mean()
    covariance = np.mean((x - mean_x) * (y - mean_y))
    denominator = x.var() + y.var() + (mean_x - mean_y) ** 2
    if denominator == 0:
        return 1.0 if np.allclose(x, y) else 0.0
    return float(2 * covariance / denominator)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """WAR, UAR, macro-F1 and per-class precision/recall/F1 over the whole set."""
    n = len(classes)
    matrix = confusion(y_true, y_pred, n)
    recall, precision, f1 = per_class_recall(matrix), per_class_precision(matrix), per_class_f1(matrix)
    result = {"war": war(y_true, y_pred), "uar": uar(y_true, y_pred, n), "macro_f1": macro_f1(y_true, y_pred, n)}
    for i, name in enumerate(classes):
        if matrix[i].sum() > 0:
            result[f"recall_{name}"] = float(recall[i])
            result[f"precision_{name}"] = float(precision[i])
            result[f"f1_{name}"] = float(f1[i])
    return result


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """CCC and MAE per dimension (``[arousal, valence]``) and their means."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    result: dict[str, float] = {}
    for i, name in enumerate(AFFECT_DIMENSIONS):
        result[f"ccc_{name}"] = ccc(y_true[:, i], y_pred[:, i])
        result[f"mae_{name}"] = float(np.mean(np.abs(y_true[:, i] - y_pred[:, i])))
    result["ccc_mean"] = float(np.mean([result[f"ccc_{d}"] for d in AFFECT_DIMENSIONS]))
    result["mae_mean"] = float(np.mean([result[f"mae_{d}"] for d in AFFECT_DIMENSIONS]))
    return result


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """How far confidence is from accuracy (Guo et al. 2017), over the whole set.

    ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|, where clips fall into ``bins`` equal-width bins of their
    top probability ``conf``, and ``acc`` is the share of clips in the bin whose top class is right.
    0 is perfectly calibrated; a model that says 0.95 and is right half the time scores about 0.45.
    """
    probabilities = np.asarray(probabilities, np.float64)
    if not len(probabilities):
        return float("nan")
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(correct[which == b].mean() - confidence[which == b].mean()) * np.sum(which == b)
            for b in range(bins) if np.any(which == b)]
    return float(np.sum(gaps) / len(probabilities))
