"""Evaluation of a model over a whole set of clips, and of a model on a labelled batch folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from affectflow.arrays import Arrays, load_arrays
from affectflow.cache import preprocess_clips
from affectflow.config import Paths
from affectflow.errors import UserError
from affectflow.labels import AFFECT_DIMENSIONS, labelled_frame
from affectflow.metrics import classification_metrics, confusion, regression_metrics
from affectflow.model import AFFECT_OUTPUT, EMOTION_OUTPUT, input_names
from affectflow.predict import Predictor
from affectflow.speakers import aligned_for
from affectflow.validation import read_labels


def predict_arrays(model: keras.Model, arrays: Arrays, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Outputs for every clip (no dropped remainder); direct calls avoid ``predict()``'s overhead."""
    chunks: dict[str, list[np.ndarray]] = {}
    names = input_names(model)
    for start in range(0, len(arrays), batch_size):
        batch = {k: arrays.inputs[k][start:start + batch_size] for k in names}
        for name, value in model(batch, training=False).items():
            chunks.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def score(labels: np.ndarray, affect: np.ndarray, outputs: Mapping[str, np.ndarray],
          classes: Sequence[str]) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics of model outputs against the targets, and the confusion matrix (None without an emotion head).

    Affect metrics only where every clip has ``[arousal, valence]`` targets.
    """
    metrics: dict[str, float] = {"n": float(len(labels))}
    matrix = None
    if EMOTION_OUTPUT in outputs:
        predicted = np.asarray(outputs[EMOTION_OUTPUT]).argmax(axis=1)
        metrics.update(classification_metrics(labels, predicted, classes))
        matrix = confusion(labels, predicted, len(classes))
    if AFFECT_OUTPUT in outputs and len(labels) and not np.isnan(affect).any():
        metrics.update(regression_metrics(affect, outputs[AFFECT_OUTPUT]))
    return metrics, matrix


def evaluate(model: keras.Model, arrays: Arrays, classes: Sequence[str]) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics over the whole set and the confusion matrix (None for a regression-only model)."""
    return score(arrays.labels, arrays.affect, predict_arrays(model, arrays), classes)


PREDICTED = "predicted"


def prediction_frame(frame: pd.DataFrame, outputs: Mapping[str, np.ndarray], classes: Sequence[str]) -> pd.DataFrame:
    """``frame`` (one row per clip, in the order of ``outputs``) with the model's answers beside the truth.

    Adds ``predicted`` (class name) and ``p_<class>`` for an emotion head, ``predicted_arousal`` and
    ``predicted_valence`` for an affect head. Metrics of any subset follow from ``score_predictions``.
    """
    result = frame.reset_index(drop=True).copy()
    if EMOTION_OUTPUT in outputs:
        probabilities = np.asarray(outputs[EMOTION_OUTPUT])
        result[PREDICTED] = [classes[i] for i in probabilities.argmax(axis=1)]
        for i, name in enumerate(classes):
            result[f"p_{name}"] = probabilities[:, i]
    if AFFECT_OUTPUT in outputs:
        for i, dim in enumerate(AFFECT_DIMENSIONS):
            result[f"predicted_{dim}"] = np.asarray(outputs[AFFECT_OUTPUT])[:, i]
    return result


def score_predictions(predictions: pd.DataFrame, classes: Sequence[str]) -> tuple[dict[str, float], np.ndarray | None]:
    """``score`` over the rows of a ``prediction_frame`` (any subset: a speaker, a group, pooled folds)."""
    outputs = {}
    if PREDICTED in predictions:
        outputs[EMOTION_OUTPUT] = predictions[[f"p_{c}" for c in classes]].to_numpy()
    if f"predicted_{AFFECT_DIMENSIONS[0]}" in predictions:
        outputs[AFFECT_OUTPUT] = predictions[[f"predicted_{d}" for d in AFFECT_DIMENSIONS]].to_numpy()
    index = {c: i for i, c in enumerate(classes)}
    labels = predictions["emotion"].map(index).to_numpy(np.int64)
    affect = predictions[list(AFFECT_DIMENSIONS)].astype("float64").to_numpy()
    return score(labels, affect, outputs, classes)


def batch_arrays(predictor: Predictor, batch_dir: Path, paths: Paths,
                 align_speakers: bool = False) -> tuple[pd.DataFrame, Arrays, list[str]]:
    """A labelled batch as ``predictor``'s model takes it, preprocessed with the model's own config.

    ``align_speakers``: align each speaker's audio features to the model's training population
    (``affectflow.speakers``; right for a model trained with ``speaker_norm``); otherwise clips go in
    as a service would see them. Returns the usable clips' labels, their arrays and the clips that
    could not be used (with reasons).
    """
    classes = predictor.card.classes
    frame = labelled_frame(read_labels(batch_dir), classes)
    frame["path"] = [str((batch_dir / p).resolve()) for p in frame["path"]]
    results = preprocess_clips(list(frame["path"]), paths.features, predictor.extraction)
    frame["record"] = [r.record for r in results]
    problems = [f"{r.clip}: {r.error}" for r in results if not r.ok]
    usable = frame[frame["record"].notna()].reset_index(drop=True)
    if usable.empty:
        raise UserError(f"{batch_dir}: no usable clips of the classes {list(classes)}")
    arrays = load_arrays(usable, classes)
    return usable, aligned_for(predictor.model, arrays) if align_speakers else arrays, problems
