"""Metrics against scikit-learn and numpy references, including degenerate cases."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_recall_fscore_support

from affectflow.metrics import ccc, classification_metrics, macro_f1, regression_metrics, uar, war


def reference_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC written out from its definition (Pearson r scaled by a bias correction factor)."""
    r = np.corrcoef(x, y)[0, 1]
    sx, sy = x.std(), y.std()
    return 2 * r * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    assert war(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert uar(y_true, y_pred, 5) == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred, 5) == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_per_class_metrics_match_sklearn():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    metrics = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for i, name in enumerate("abc"):
        assert metrics[f"precision_{name}"] == pytest.approx(precision[i])
        assert metrics[f"recall_{name}"] == pytest.approx(recall[i])
        assert metrics[f"f1_{name}"] == pytest.approx(f1[i])


def test_class_never_predicted_and_class_absent():
    # class 2 never predicted; class 3 absent from truth and predictions
    y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 1, 0, 1])
    assert uar(y_true, y_pred, 4) == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred, 4) == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


def test_one_class_only():
    y = np.zeros(10, int)
    assert war(y, y) == 1.0 and uar(y, y, 3) == 1.0 and macro_f1(y, y, 3) == 1.0
    wrong = np.ones(10, int)
    assert uar(y, wrong, 3) == 0.0
    assert macro_f1(y, wrong, 3) == pytest.approx(f1_score(y, wrong, average="macro", zero_division=0))


@pytest.mark.parametrize("seed", range(5))
def test_ccc_matches_definition(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300)
    y = 0.7 * x + rng.normal(scale=0.5, size=300) + 0.2
    assert ccc(x, y) == pytest.approx(reference_ccc(x, y))


def test_ccc_degenerate_cases():
    x = np.linspace(-1, 1, 50)
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) == pytest.approx(-1.0)
    assert ccc(x, np.zeros_like(x)) == 0.0            # constant prediction: no concordance
    assert ccc(np.full(5, 0.3), np.full(5, 0.3)) == 1.0  # both constant and equal
    assert ccc(np.full(5, 0.3), np.full(5, 0.1)) == 0.0  # both constant, different


def test_regression_metrics_keep_arousal_valence_order():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (100, 2))
    pred = truth.copy()
    pred[:, 1] = rng.uniform(-1, 1, 100)  # valence predictions are noise
    metrics = regression_metrics(truth, pred)
    assert metrics["ccc_arousal"] == pytest.approx(1.0)
    assert metrics["ccc_valence"] < 0.3
    assert metrics["mae_arousal"] == 0.0
    assert metrics["ccc_mean"] == pytest.approx((metrics["ccc_arousal"] + metrics["ccc_valence"]) / 2)
