"""Training inputs: class weights, modalities pruned to those the corpus has, refit on train + val."""

from dataclasses import replace

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight
from support import audio_only

from affectflow.arrays import concatenate
from affectflow.config import TrainConfig
from affectflow.training import best_epoch, class_weights, prepare

CONFIG = replace(TrainConfig(), epochs=3, hidden_units=8, batch_size=8, audio_encoder="stats", speaker_norm=False)


def test_class_weights_match_sklearn_balanced_and_ignore_absent_classes():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 0])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(class_weights(labels, 3), expected, rtol=1e-6)
    weights = class_weights(np.array([0, 0, 2]), 4)
    assert weights[1] == weights[3] == 0 and (weights[[0, 2]] * [2, 1]).sum() == pytest.approx(3)


def test_nothing_to_learn_from_is_an_error():
    silent = audio_only(6, 0)
    silent = silent.replace(inputs={**silent.inputs, "audio_mask": np.zeros((6, 1), "float32")})
    with pytest.raises(ValueError, match="no training clip"):
        prepare(silent, [], CONFIG)


def test_concatenate_keeps_order_and_speakers():
    a, b = audio_only(3, 0), audio_only(2, 1)
    both = concatenate([a, b])
    assert len(both) == 5 and list(both.speakers) == list(a.speakers) + list(b.speakers)
    np.testing.assert_array_equal(both.inputs["mfcc"][3:], b.inputs["mfcc"])


def test_best_epoch_is_chosen_after_the_warm_up():
    history = {"val_loss": [0.1, 0.9, 0.8, 0.5, 0.7, 0.6]}
    assert best_epoch(history, replace(CONFIG, epochs=6, min_epochs=0)) == 1
    assert best_epoch(history, replace(CONFIG, epochs=6, min_epochs=2)) == 4  # a lucky first epoch is ignored
    assert best_epoch(history, replace(CONFIG, epochs=6, min_epochs=50)) == 6  # the last epoch is always watched
    assert best_epoch({"val_loss": [0.3, 0.2]}, replace(CONFIG, epochs=40, min_epochs=10)) == 2  # stopped short
