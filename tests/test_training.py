"""Training inputs: class weights, modalities pruned to those the corpus has, refit on train + val."""

from dataclasses import replace

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from affectflow.config import TrainConfig
from affectflow.model import input_names
from affectflow.training import Arrays, best_epoch, class_weights, concatenate, prepare, train

CLASSES = ("anger", "happiness", "sadness")
CONFIG = replace(TrainConfig(), epochs=3, hidden_units=8, batch_size=8, audio_encoder="stats", speaker_norm=False)


def audio_only(n: int, seed: int) -> Arrays:
    """Audio clips plus the zero frames (video mask 0) that an audio-only corpus's records hold."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    inputs = {"frames": np.zeros((n, 4, 16, 16, 3), np.uint8), "video_mask": np.zeros((n, 1), "float32"),
              "mfcc": (rng.normal(size=(n, 10, 40)) + labels[:, None, None]).astype("float32"),
              "audio_mask": np.ones((n, 1), "float32")}
    return Arrays(inputs, labels, np.zeros((n, 2), "float32"), np.array([f"s{i % 3}" for i in range(n)]))


def test_class_weights_match_sklearn_balanced_and_ignore_absent_classes():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 0])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(class_weights(labels, 3), expected, rtol=1e-6)
    weights = class_weights(np.array([0, 0, 2]), 4)
    assert weights[1] == weights[3] == 0 and (weights[[0, 2]] * [2, 1]).sum() == pytest.approx(3)


def test_a_modality_no_training_clip_carries_gets_no_encoder():
    ready, (other,) = prepare(audio_only(12, 0), [audio_only(6, 1)], CONFIG)
    assert "frames" not in ready.inputs and "video_mask" not in ready.inputs and "frames" not in other.inputs
    model = train(audio_only(24, 0), audio_only(9, 1), CLASSES, CONFIG, progress=lambda _: None).model
    assert set(input_names(model)) == {"mfcc", "audio_mask"}


def test_nothing_to_learn_from_is_an_error():
    silent = audio_only(6, 0)
    silent = silent.replace(inputs={**silent.inputs, "audio_mask": np.zeros((6, 1), "float32")})
    with pytest.raises(ValueError, match="no training clip"):
        prepare(silent, [], CONFIG)


def test_refit_trains_on_train_and_val_for_the_best_epoch_count():
    messages = []
    result = train(audio_only(24, 0), audio_only(9, 1), CLASSES, replace(CONFIG, refit=True),
                   progress=messages.append)
    assert result.refit and 1 <= result.best_epoch <= CONFIG.epochs
    assert f"refitting on train + validation for {result.best_epoch} epochs" in messages
    assert len(result.history["loss"]) >= result.best_epoch  # the curves of the selection run


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
