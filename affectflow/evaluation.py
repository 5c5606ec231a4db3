"""Evaluation of a model over a whole set of clips, and of a model on a labelled batch folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from affectflow.cache import preprocess_clips
from affectflow.config import Paths
from affectflow.metrics import classification_metrics, confusion, regression_metrics
from affectflow.model import AFFECT_OUTPUT, EMOTION_OUTPUT, input_names
from affectflow.predict import Predictor
from affectflow.training import Arrays, load_arrays


def predict_arrays(model: keras.Model, arrays: Arrays, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Outputs for every clip (no dropped remainder); direct calls avoid ``predict()``'s overhead."""
    chunks: dict[str, list[np.ndarray]] = {}
    names = input_names(model)
    for start in range(0, len(arrays), batch_size):
        batch = {k: arrays.inputs[k][start:start + batch_size] for k in names}
        for name, value in model(batch, training=False).items():
            chunks.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def evaluate(model: keras.Model, arrays: Arrays, classes: Sequence[str]) -> tuple[dict[str, float], np.ndarray | None]:
    """Metrics over the whole set and the confusion matrix (None for a regression-only model)."""
    outputs = predict_arrays(model, arrays)
    metrics: dict[str, float] = {"n": float(len(arrays))}
    matrix = None
    if EMOTION_OUTPUT in outputs:
        predicted = outputs[EMOTION_OUTPUT].argmax(axis=1)
        metrics.update(classification_metrics(arrays.labels, predicted, classes))
        matrix = confusion(arrays.labels, predicted, len(classes))
    if AFFECT_OUTPUT in outputs and not np.isnan(arrays.affect).any():
        metrics.update(regression_metrics(arrays.affect, outputs[AFFECT_OUTPUT]))
    return metrics, matrix


def evaluate_batch(predictor: Predictor, batch_dir: Path, paths: Paths) -> tuple[dict[str, float], list[str]]:
    """Metrics of ``predictor`` on a labelled batch, preprocessed with the model's own config.

    Returns the metrics and the clips that could not be used (with reasons).
    """
    from affectflow.experiment import labelled_frame
    from affectflow.validation import read_labels

    frame = labelled_frame(read_labels(batch_dir), predictor.card.classes)
    frame["path"] = [str((batch_dir / p).resolve()) for p in frame["path"]]
    results = preprocess_clips(list(frame["path"]), paths.features, predictor.card.preprocess)
    frame["record"] = [r.record for r in results]
    problems = [f"{r.clip}: {r.error}" for r in results if not r.ok]
    usable = frame[frame["record"].notna()]
    if usable.empty:
        raise ValueError(f"{batch_dir}: no usable clips of the classes {list(predictor.card.classes)}")
    metrics, _ = evaluate(predictor.model, load_arrays(usable, predictor.card.classes), predictor.card.classes)
    return metrics, problems
