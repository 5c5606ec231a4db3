"""A linear classifier on a clip's openSMILE functionals, beside the network (``TrainConfig.linear_head``).

ComParE's 6373 functionals outnumber a corpus's clips tenfold: a dense layer inside the network overfits them
(docs/model.md, "ComParE"), while an L2-regularised logistic regression on the standardised functionals, the
field's classic baseline, holds up, and errs on other clips than the network does. The served model averages
the two class distributions:

    p(c | clip) = (p_network(c) + m p_linear(c)) / (1 + m),   p_linear = softmax(W (x - mean) / std + b),

with ``m`` the clip's ``audio_mask`` (a clip without audio is the network's alone). The regression is fitted
after the network, on the same speaker-aligned training clips; its strength ``C`` (inverse L2 weight) is the
one of ``STRENGTHS`` whose average scores the best UAR on the validation speakers, never on the test ones.
Mean, std, ``W`` and ``b`` become layers of one Keras model, so the service, the registry and speaker
calibration see one model whose ``<set>_norm`` layer holds the population statistics like any other input's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import keras
import numpy as np
from keras import layers

from affectflow.arrays import Arrays
from affectflow.config import TrainConfig
from affectflow.metrics import uar
from affectflow.model import EMOTION_OUTPUT

# Inverse L2 weights tried on the validation speakers, strongest regularisation first (it wins ties).
STRENGTHS: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)
# Logit of a class no training clip has: never predicted.
ABSENT_LOGIT = -30.0


def resolved(config: TrainConfig, train_set: Arrays) -> TrainConfig:
    """``config`` with ``linear_head`` "auto" made concrete for ``train_set``: "compare" where its clips hold
    ComParE functionals, the task classifies and clips with audio show two classes or more; "none" otherwise."""
    if config.linear_head != "auto":
        return config
    usable = ("compare" in train_set.inputs and config.task != "regression"
              and len(np.unique(_voiced(train_set, "compare")[1])) >= 2)
    return replace(config, linear_head="compare" if usable else "none")


def network_inputs(arrays: Arrays, config: TrainConfig) -> Arrays:
    """``arrays`` without the linear head's functionals: what the network itself is trained on."""
    if config.linear_head == "none":
        return arrays
    if config.linear_head not in arrays.inputs:
        raise ValueError(f"linear_head {config.linear_head} needs records with those functionals: preprocess "
                         f"with an --audio-features set that names {config.linear_head}")
    return arrays.replace(inputs={k: v for k, v in arrays.inputs.items() if k != config.linear_head})


def _voiced(arrays: Arrays, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The functionals ``name`` and class labels of the clips with audio."""
    voiced = arrays.inputs["audio_mask"][:, 0] > 0
    return arrays.inputs[name][voiced], arrays.labels[voiced]


def _fit(standardised: np.ndarray, labels: np.ndarray, classes: int, strength: float,
         config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with L2 weight ``1 / strength``, classes weighted "balanced" as the
    network's cross-entropy is; (W (k, d), b (k,)) over all ``classes``, absent ones at ``ABSENT_LOGIT``."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=strength, class_weight="balanced" if config.class_weighting else None,
                                max_iter=2000, random_state=config.seed).fit(standardised, labels)
    weights = np.zeros((classes, standardised.shape[1]), np.float32)
    bias = np.full(classes, ABSENT_LOGIT, np.float32)
    if len(fitted.classes_) == 2:  # scikit-learn keeps one row for two classes: the logit of the second
        weights[fitted.classes_[1]], bias[fitted.classes_[1]] = fitted.coef_[0], fitted.intercept_[0]
        bias[fitted.classes_[0]] = 0.0
    else:
        weights[fitted.classes_], bias[fitted.classes_] = fitted.coef_, fitted.intercept_
    return weights, bias


def _normaliser(name: str, arrays: Arrays) -> layers.Normalization:
    norm = layers.Normalization(axis=-1, name=f"{name}_norm")
    norm.adapt(_voiced(arrays, name)[0])
    return norm


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _mixed(network: np.ndarray, linear: np.ndarray, audio: np.ndarray) -> np.ndarray:
    return (network + audio * linear) / (1.0 + audio)


def choose_strength(network_val: np.ndarray, train_set: Arrays, val_set: Arrays, classes: int, config: TrainConfig,
                    progress: Callable[[str], None]) -> float:
    """The ``STRENGTHS`` value whose average with the network's validation probabilities ``network_val`` scores
    the best UAR on ``val_set`` (the strongest regularisation on ties); the middle one without validation clips."""
    if not len(val_set):
        return STRENGTHS[1]
    name = config.linear_head
    norm = _normaliser(name, train_set)
    values, labels = _voiced(train_set, name)
    standardised = np.asarray(norm(values))
    val_standardised = np.asarray(norm(val_set.inputs[name]))
    audio = val_set.inputs["audio_mask"][:, :1].astype(np.float32)
    scores = {}
    for strength in STRENGTHS:
        weights, bias = _fit(standardised, labels, classes, strength, config)
        mixed = _mixed(network_val, _softmax(val_standardised @ weights.T + bias), audio)
        scores[strength] = uar(val_set.labels, mixed.argmax(axis=1), classes)
    chosen = max(STRENGTHS, key=lambda s: (scores[s], -s))
    progress(f"linear head on {name}: validation UAR by C " +
             ", ".join(f"{s:g}: {v:.3f}" for s, v in scores.items()) + f"; C={chosen:g} chosen")
    return chosen


def attach(network: keras.Model, train_set: Arrays, classes: int, strength: float, config: TrainConfig) -> keras.Model:
    """``network`` with the linear head on ``config.linear_head`` fitted on ``train_set`` (speaker-aligned) at
    ``strength``: one model whose ``emotion`` output averages the two (see the module docstring)."""
    name = config.linear_head
    norm = _normaliser(name, train_set)
    values, labels = _voiced(train_set, name)
    weights, bias = _fit(np.asarray(norm(values)), labels, classes, strength, config)
    inputs = dict(network.input)  # a network of ``model.build_model``: inputs and outputs keyed by name
    inputs[name] = keras.Input((values.shape[1],), name=name)
    dense = layers.Dense(classes, activation="softmax", dtype="float32", name=f"{name}_linear")
    linear = dense(norm(inputs[name]))
    dense.set_weights([weights.T, bias])
    outputs = dict(network.output)
    audio = inputs["audio_mask"]
    # Keyed ``emotion`` like the network's output (its layer keeps that name, so this one cannot have it).
    outputs[EMOTION_OUTPUT] = layers.Identity(name=f"{EMOTION_OUTPUT}_average")(
        (outputs[EMOTION_OUTPUT] + audio * linear) / (1.0 + audio))
    return keras.Model(inputs, outputs, name=network.name)
