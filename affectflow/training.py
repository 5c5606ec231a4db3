"""Training from the feature cache: tf.data input, seeded fit with early stopping, evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from affectflow.config import TrainConfig
from affectflow.features import AUDIO_EXTRAS, MODEL_INPUTS, load_features, stack_inputs
from affectflow.labels import AFFECT_DIMENSIONS
from affectflow.model import AFFECT_OUTPUT, EMOTION_OUTPUT, build_model, compile_model

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
# Everything a record offers: frames, face (features, crops, mask), MFCC with deltas and log-mel, masks.
TRAINING_INPUTS = (*MODEL_INPUTS, *AUDIO_EXTRAS)


@dataclass
class Arrays:
    """Model inputs and targets for a set of clips (frames stay uint8 until the model)."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray          # class index per clip
    affect: np.ndarray          # (n, 2) [arousal, valence]

    def __len__(self) -> int:
        return len(self.labels)

    def targets(self, output_names: Sequence[str]) -> dict[str, np.ndarray]:
        available = {EMOTION_OUTPUT: self.labels, AFFECT_OUTPUT: self.affect}
        return {name: available[name] for name in output_names}

    def masked(self, modality: str) -> Arrays:
        """A copy with one modality hidden (``video`` or ``audio``): for ablations."""
        inputs = dict(self.inputs)
        inputs[f"{modality}_mask"] = np.zeros_like(inputs[f"{modality}_mask"])
        return Arrays(inputs, self.labels, self.affect)


def load_arrays(frame: pd.DataFrame, classes: Sequence[str]) -> Arrays:
    """Stack the cached records named in ``frame.record`` with the frame's labels."""
    index = {c: i for i, c in enumerate(classes)}
    records = [load_features(Path(p)) for p in frame["record"]]
    affect = frame[list(AFFECT_DIMENSIONS)].astype("float32").to_numpy()
    return Arrays(stack_inputs(records, TRAINING_INPUTS), frame["emotion"].map(index).to_numpy(np.int64), affect)


def _dataset(arrays: Arrays, output_names: Sequence[str], batch_size: int, shuffle_seed: int | None):
    data = tf.data.Dataset.from_tensor_slices((arrays.inputs, arrays.targets(output_names)))
    if shuffle_seed is not None:
        data = data.shuffle(len(arrays), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _strategy() -> tf.distribute.Strategy:
    """Mixed precision and (multi-)GPU distribution only where GPUs exist; the default strategy on CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.OneDeviceStrategy("/gpu:0")


class _EpochProgress(keras.callbacks.Callback):
    def __init__(self, total: int, report: Progress):
        super().__init__()
        self.total, self.report = total, report

    def on_epoch_end(self, epoch, logs=None):
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if "loss" in k)
        self.report(f"epoch {epoch + 1}/{self.total}: {shown}")


@dataclass
class TrainingResult:
    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: np.ndarray | None = None


def train(train_set: Arrays, val_set: Arrays, classes: Sequence[str], config: TrainConfig,
          progress: Progress = log.info) -> TrainingResult:
    """Fit a fresh model; early stopping on validation loss restores the best weights."""
    keras.utils.set_random_seed(config.seed)
    with _strategy().scope():
        shapes = {name: array.shape[1:] for name, array in train_set.inputs.items()}
        model = build_model(classes, shapes, config, samples=train_set.inputs)
        compile_model(model, config)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(2, config.patience // 2)),
        _EpochProgress(config.epochs, progress),
    ]
    fitted = model.fit(
        _dataset(train_set, model.output_names, config.batch_size, shuffle_seed=config.seed),
        validation_data=_dataset(val_set, model.output_names, config.batch_size, shuffle_seed=None),
        epochs=config.epochs, callbacks=callbacks, verbose=0, shuffle=False,  # tf.data shuffles
    )
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    return TrainingResult(model, history, best_epoch)
