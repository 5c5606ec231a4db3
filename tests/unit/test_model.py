"""The model builder, the CCC loss against numpy, modality dropout, save/load."""


import numpy as np
import pytest
from support import model_inputs as inputs
from support import small_model

from affectflow.metrics import ccc
from affectflow.model import (
    AFFECT_OUTPUT,
    EMOTION_OUTPUT,
    ModalityDropout,
    ccc_loss,
)


@pytest.mark.parametrize("seed", range(3))
def test_ccc_loss_is_one_minus_mean_ccc_per_dimension(seed):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-1, 1, (64, 2)).astype("float32")
    pred = (0.6 * truth + rng.normal(scale=0.3, size=truth.shape)).astype("float32")
    expected = 1 - np.mean([ccc(truth[:, i], pred[:, i]) for i in range(2)])
    assert float(ccc_loss(truth, pred)) == pytest.approx(expected, abs=1e-5)


def test_ccc_loss_degenerate_batches_stay_finite():
    truth = np.linspace(-1, 1, 16, dtype="float32").reshape(8, 2)
    assert float(ccc_loss(truth, truth)) == pytest.approx(0.0, abs=1e-5)
    constant = np.zeros_like(truth)
    assert float(ccc_loss(truth, constant)) == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(float(ccc_loss(constant, constant)))


@pytest.mark.parametrize("task,heads", [("multitask", {EMOTION_OUTPUT, AFFECT_OUTPUT}),
                                        ("classification", {EMOTION_OUTPUT}), ("regression", {AFFECT_OUTPUT})])
def test_task_modes_build_their_heads(task, heads):
    outputs = small_model(task)(inputs(3), training=False)
    assert set(outputs) == heads
    if EMOTION_OUTPUT in outputs:
        probs = np.asarray(outputs[EMOTION_OUTPUT])
        assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    if AFFECT_OUTPUT in outputs:
        affect = np.asarray(outputs[AFFECT_OUTPUT])
        assert affect.shape == (3, 2) and np.all(np.abs(affect) <= 1)


@pytest.mark.parametrize("mask,arrays", [("audio_mask", ("mfcc", "logmel")), ("face_mask", ("face", "face_crops"))])
def test_masked_modality_does_not_influence_prediction(mask, arrays):
    model = small_model()
    x = inputs(2)
    x[mask][:] = 0
    rng = np.random.default_rng(9)
    other = dict(x, **{k: (rng.normal(size=x[k].shape) * 50).astype(x[k].dtype) for k in arrays})
    a, b = model(x, training=False), model(other, training=False)
    np.testing.assert_allclose(np.asarray(a[EMOTION_OUTPUT]), np.asarray(b[EMOTION_OUTPUT]), atol=1e-6)


def test_modality_dropout_never_hides_all_and_is_identity_at_inference():
    layer = ModalityDropout(rate=0.5, seed=1)
    ones = np.ones((1000, 1), "float32")
    video, audio, face = (np.asarray(t) for t in layer([ones, ones, ones], training=True))
    assert np.all(video + audio + face >= 1)
    assert 0.2 < 1 - video.mean() < 0.6
    absent = np.zeros_like(ones)
    _, _, still_absent = layer([ones, ones, absent], training=True)
    assert np.all(np.asarray(still_absent) == 0)  # dropout never invents a modality
    for mask in layer([ones, ones, ones], training=False):
        assert np.all(np.asarray(mask) == 1)


