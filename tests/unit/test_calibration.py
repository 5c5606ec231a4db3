"""Temperature scaling and the expected calibration error, on probabilities whose truth is known."""

import numpy as np
import pytest

from affectflow.calibration import calibrate, fit_temperature, scaled
from affectflow.metrics import expected_calibration_error
from affectflow.predict import ModelCard


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _overconfident(n: int, sharpen: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), reported as softmax(sharpen * z): calibrated by T = sharpen exactly."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 5))
    truth = _softmax(logits)
    labels = np.array([rng.choice(5, p=p) for p in truth])
    return _softmax(sharpen * logits), labels


def test_scaling_keeps_the_ranking_and_sums_to_one():
    probs, _ = _overconfident(200, 3.0, seed=0)
    for temperature in (0.5, 1.0, 3.0):
        out = scaled(probs, temperature)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(scaled(probs, 1.0), probs, atol=1e-6)
    assert scaled(probs, 3.0).max(axis=1).mean() < probs.max(axis=1).mean()  # T > 1 flattens


def test_ece_of_known_cases():
    sure = np.tile([0.95, 0.05], (100, 1))
    assert expected_calibration_error(sure, np.array([0, 1] * 50)) == pytest.approx(0.45)   # right half the time
    assert expected_calibration_error(sure, np.zeros(100, int)) == pytest.approx(0.05)      # right every time
    honest = np.tile([0.5, 0.5], (100, 1))
    assert expected_calibration_error(honest, np.array([0, 1] * 50)) == pytest.approx(0.0)  # argmax is class 0


def test_fitted_temperature_recovers_the_sharpening_and_lowers_ece():
    val, val_labels = _overconfident(3000, 3.0, seed=1)
    assert fit_temperature(val, val_labels) == pytest.approx(3.0, rel=0.1)
    test, test_labels = _overconfident(3000, 3.0, seed=2)
    found = calibrate(val, val_labels, test, test_labels)
    assert found.ece_before > 0.2 and found.ece_after < 0.05  # binning noise is ~0.02 at n=3000
    assert found.metrics() == {"ece": found.ece_before, "ece_calibrated": found.ece_after}


def test_well_calibrated_model_keeps_temperature_near_one():
    val, labels = _overconfident(3000, 1.0, seed=3)
    assert fit_temperature(val, labels) == pytest.approx(1.0, rel=0.1)


def test_card_carries_temperature_and_old_cards_read_as_uncalibrated(tmp_path):
    from affectflow.config import PreprocessConfig

    card = ModelCard(("a", "b"), PreprocessConfig(), "classification", temperature=1.7)
    assert ModelCard.from_dict(card.to_dict()).temperature == 1.7
    old = card.to_dict()
    del old["temperature"]
    assert ModelCard.from_dict(old).temperature == 1.0
