"""Confidence that means what it says: temperature scaling fitted on the validation speakers.

A network trained with cross-entropy is often over-confident on speakers it never heard. Temperature scaling
(Guo et al. 2017) divides the log-probabilities by one number ``T`` fitted to minimise the negative
log-likelihood on held-out clips: the predicted class never changes, only how sure the answer claims to be.
The fit uses the validation speakers (never the test split); the test split then measures the expected
calibration error before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from affectflow.metrics import expected_calibration_error

# T outside this range means the validation set is degenerate (a handful of clips all right or all wrong).
TEMPERATURE_RANGE = (0.05, 20.0)
_EPS = 1e-7


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row: the same ranking, sharper for T < 1, flatter for T > 1."""
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p[label]`` over the clips."""
    picked = np.asarray(probabilities)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in ``TEMPERATURE_RANGE`` minimising the NLL of ``scaled(probabilities, T)`` (searched on log T)."""
    low, high = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(lambda log_t: negative_log_likelihood(scaled(probabilities, np.exp(log_t)), labels),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it does on the test split."""

    temperature: float
    ece_before: float
    ece_after: float

    def metrics(self) -> dict[str, float]:
        """As test metrics: ``ece`` (raw softmax) and ``ece_calibrated`` (what the service reports)."""
        return {"ece": self.ece_before, "ece_calibrated": self.ece_after}


def calibrate(val_probabilities: np.ndarray, val_labels: np.ndarray, test_probabilities: np.ndarray,
              test_labels: np.ndarray) -> Calibration:
    """Fit ``T`` on the validation clips and measure the test split's ECE before and after."""
    temperature = fit_temperature(val_probabilities, val_labels)
    return Calibration(temperature, expected_calibration_error(test_probabilities, test_labels),
                       expected_calibration_error(scaled(test_probabilities, temperature), test_labels))
