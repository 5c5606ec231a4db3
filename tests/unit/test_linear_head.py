"""The linear head beside the network: what the served model computes, what it keeps, how its strength is chosen."""

from dataclasses import replace

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from affectflow.arrays import Arrays
from affectflow.config import ConfigError, TrainConfig
from affectflow.linear_head import STRENGTHS, attach, choose_strength, network_inputs, resolved
from affectflow.model import build_model, input_names
from affectflow.speakers import population_of

CONFIG = replace(TrainConfig(), hidden_units=8, linear_head="compare")


def _clips(n: int = 36, seed: int = 0, audio: float = 1.0) -> Arrays:
    """MFCC noise, and 20 functionals on scales of their own whose first three follow the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    functionals = rng.normal(size=(n, 20)) * np.linspace(1, 100, 20) + 50.0
    functionals[np.arange(n), labels] += 200.0
    inputs = {"mfcc": rng.normal(size=(n, 10, 40)).astype("float32"),
              "compare": functionals.astype("float32"),
              "audio_mask": (rng.random((n, 1)) < audio).astype("float32")}
    return Arrays(inputs, labels, np.zeros((n, 2), "float32"), np.array([f"s{i % 4}" for i in range(n)]))


def _network(train_set: Arrays) -> keras.Model:
    inputs = network_inputs(train_set, CONFIG).inputs
    return build_model(["a", "b", "c"], {k: v.shape[1:] for k, v in inputs.items()}, CONFIG, samples=inputs)


def test_the_served_emotion_is_the_average_of_the_network_and_the_regression_on_standardised_functionals(tmp_path):
    train_set = _clips()
    network = _network(train_set)
    model = attach(network, train_set, 3, 1e-2, CONFIG)

    assert "compare" in input_names(model) and "compare" not in input_names(network)
    test = _clips(seed=1)
    served = model.predict(test.inputs, verbose=0)["emotion"]
    alone = network.predict(network_inputs(test, CONFIG).inputs, verbose=0)["emotion"]
    values = train_set.inputs["compare"]
    mean, std = values.mean(axis=0), values.std(axis=0)
    regression = LogisticRegression(C=1e-2, class_weight="balanced", max_iter=2000).fit((values - mean) / std,
                                                                                         train_set.labels)
    expected = (alone + regression.predict_proba((test.inputs["compare"] - mean) / std)) / 2
    np.testing.assert_allclose(served, expected, atol=1e-4)
    np.testing.assert_allclose(population_of(model)["compare"][0], mean, rtol=1e-5)

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(test.inputs, verbose=0)["emotion"], served, atol=1e-6)


def test_a_clip_without_audio_is_the_networks_alone():
    train_set, test = _clips(), _clips(seed=2, audio=0.5)
    network = _network(train_set)
    model = attach(network, train_set, 3, 1e-2, CONFIG)
    silent = test.inputs["audio_mask"][:, 0] == 0
    assert silent.any() and (~silent).any()

    served = model.predict(test.inputs, verbose=0)["emotion"]
    alone = network.predict(network_inputs(test, CONFIG).inputs, verbose=0)["emotion"]
    np.testing.assert_allclose(served[silent], alone[silent], atol=1e-6)
    assert np.abs(served[~silent] - alone[~silent]).max() > 1e-3


def test_a_confident_head_outvotes_an_untrained_network():
    train_set, test = _clips(), _clips(seed=3)
    model = attach(_network(train_set), train_set, 3, 10.0, CONFIG)
    predicted = model.predict(test.inputs, verbose=0)["emotion"].argmax(axis=1)
    assert (predicted == test.labels).mean() > 0.9


def test_the_strength_is_chosen_on_validation_and_ties_go_to_the_strongest_regularisation():
    train_set, val_set = _clips(), _clips(seed=4)
    certain = np.eye(3, dtype="float32")[val_set.labels]  # a network right on every validation clip
    seen = []
    assert choose_strength(certain, train_set, val_set, 3, CONFIG, seen.append) == STRENGTHS[0]
    assert all(f"{s:g}: 1.000" in seen[0] for s in STRENGTHS)

    wrong = np.eye(3, dtype="float32")[(val_set.labels + 1) % 3] * 0.4 + 0.2  # leaning to a wrong class
    chosen = choose_strength(wrong, train_set, val_set, 3, CONFIG, seen.append)
    assert chosen in STRENGTHS and f"C={chosen:g} chosen" in seen[1]


def test_the_head_needs_its_functionals_and_an_emotion_head():
    with pytest.raises(ValueError, match="linear_head compare needs records with those functionals"):
        network_inputs(_clips().replace(inputs={"mfcc": np.zeros((2, 10, 40))}), CONFIG)
    with pytest.raises(ConfigError, match="regression-only"):
        replace(CONFIG, task="regression")
    assert network_inputs(_clips(), replace(CONFIG, linear_head="none")).inputs.keys() == _clips().inputs.keys()


def test_auto_takes_compare_where_the_records_hold_it_and_the_task_classifies():
    auto = replace(CONFIG, linear_head="auto")
    assert TrainConfig().linear_head == "auto"
    assert resolved(auto, _clips()).linear_head == "compare"
    assert resolved(auto, _clips().replace(inputs={k: v for k, v in _clips().inputs.items() if k != "compare"})
                    ).linear_head == "none"
    assert resolved(replace(auto, task="regression"), _clips()).linear_head == "none"
    assert resolved(auto, _clips(audio=0.0)).linear_head == "none"  # no clip with audio: nothing to fit
    one_class = _clips()
    assert resolved(auto, one_class.replace(labels=np.zeros_like(one_class.labels))).linear_head == "none"
    assert resolved(CONFIG, _clips(audio=0.0)).linear_head == "compare"  # an explicit choice is kept
