"""Training from the feature cache: tf.data input, seeded fit with early stopping, evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from affectflow.arrays import Arrays, concatenate
from affectflow.backbone import load_backbone
from affectflow.config import TrainConfig
from affectflow.linear_head import attach, choose_strength, network_inputs, resolved
from affectflow.model import EMOTION_OUTPUT, build_model, compile_model
from affectflow.runtime import gpus
from affectflow.speakers import align_speakers, aligned_for, audio_statistics

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``n / (k * count_c)`` per class (scikit-learn's "balanced"): every class weighs the same in total.

    Classes absent from ``labels`` get weight 0 (they contribute nothing anyway).
    """
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights.astype(np.float32)


def input_pipeline(arrays: Arrays, output_names: Sequence[str], batch_size: int, shuffle_seed: int | None,
             emotion_weights: np.ndarray | None = None):
    """Batches of (inputs, targets[, sample weights]); ``emotion_weights`` (per class) weight the
    cross-entropy per clip. Keras 3 takes no ``class_weight`` with dict outputs, so the weights travel as
    per-output sample weights (1 for the affect head)."""
    parts = (arrays.inputs, arrays.targets(output_names))
    if emotion_weights is not None:
        ones = np.ones(len(arrays), np.float32)
        parts += ({name: emotion_weights[arrays.labels] if name == EMOTION_OUTPUT else ones
                   for name in output_names},)
    data = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle_seed is not None:
        data = data.shuffle(len(arrays), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _strategy() -> tf.distribute.Strategy:
    """Mixed precision and (multi-)GPU distribution only where GPUs exist; the default strategy on CPU.

    On CPU, TensorFlow's deterministic op implementations are switched on: they cost ~2% of training time
    here and guarantee that a seed gives the same model (benchmarks/reproducibility.py). On GPUs they are
    left off (some kernels have no deterministic version or a slow one): GPU runs may differ slightly.
    """
    found = gpus()
    if not found:
        tf.config.experimental.enable_op_determinism()
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    return tf.distribute.MirroredStrategy() if len(found) > 1 else tf.distribute.OneDeviceStrategy("/gpu:0")


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
    refit: bool = False         # the model was refit on train + val (val metrics then flatter it)
    linear_strength: float | None = None   # C of the linear head chosen on validation (``config.linear_head``)


def prepare(train_set: Arrays, other: Sequence[Arrays], config: TrainConfig) -> tuple[Arrays, list[Arrays]]:
    """What the model is trained and selected on: only the modalities some training clip carries (an
    audio-only corpus gets no video encoder), speakers aligned when ``config.speaker_norm``."""
    modalities = train_set.present()
    if not modalities:
        raise ValueError("no training clip carries any modality (every mask is 0)")
    train_set, other = train_set.only(modalities), [a.only(modalities) for a in other]
    if config.speaker_norm and "audio" in modalities and train_set.speakers is not None:
        population = audio_statistics(train_set)
        train_set, other = align_speakers(train_set, population), [align_speakers(a, population) for a in other]
    return train_set, other


def _finetuning(train_set: Arrays, val_set: Arrays | None, config: TrainConfig,
                backbone: str) -> tuple[Arrays, Arrays | None]:
    """With ``config.finetune_backbone`` the model runs the backbone on ``frames`` itself: the cached
    embeddings are dropped. Fine-tuning without a backbone is an error, not a silent no-op."""
    if not config.finetune_backbone:
        return train_set, val_set
    if not backbone:
        raise ValueError("finetune_backbone needs a backbone: preprocess with config.with_backbone(cfg, path)")
    if "frames" not in train_set.inputs:
        raise ValueError("finetune_backbone needs video frames, and no training clip has video")

    def strip(arrays: Arrays) -> Arrays:
        return arrays.replace(inputs={k: v for k, v in arrays.inputs.items() if k != "backbone"})
    return strip(train_set), None if val_set is None else strip(val_set)


def _fit(train_set: Arrays, val_set: Arrays | None, classes: Sequence[str], config: TrainConfig,
         epochs: int, progress: Progress, rates: Sequence[float] = (), backbone: str = "",
         watchers: Sequence[keras.callbacks.Callback] = ()) -> tuple[keras.Model, dict[str, list[float]]]:
    """A fresh seeded model fitted for up to ``epochs``; with ``val_set``, early stopping on its loss
    restores the best weights and the learning rate halves on plateaus; without, ``rates`` (one per
    epoch) replay a schedule. ``backbone``: the path fine-tuned when ``config.finetune_backbone``.
    ``watchers``: more Keras callbacks (e.g. MLflow's, logging each epoch as it ends)."""
    keras.utils.set_random_seed(config.seed)
    train_set, val_set = _finetuning(train_set, val_set, config, backbone)
    with _strategy().scope():
        shapes = {name: array.shape[1:] for name, array in train_set.inputs.items()}
        model = build_model(classes, shapes, config, samples=train_set.inputs,
                            finetune=load_backbone(backbone) if config.finetune_backbone else None)
        compile_model(model, config)
    weights = class_weights(train_set.labels, len(classes)) if config.class_weighting else None
    callbacks: list[keras.callbacks.Callback] = [_EpochProgress(epochs, progress), *watchers]
    validation = None
    if val_set is not None:
        validation = input_pipeline(val_set, model.output_names, config.batch_size, shuffle_seed=None)
        callbacks += [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True,
                                          start_from_epoch=_warm_up(config)),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(2, config.patience // 2)),
        ]
    elif rates:
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, _: float(rates[epoch])))
    fitted = model.fit(
        input_pipeline(train_set, model.output_names, config.batch_size, config.seed, weights),
        validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False,  # tf.data shuffles
    )
    return model, {k: [float(v) for v in values] for k, values in fitted.history.items()}


def _warm_up(config: TrainConfig) -> int:
    """Epochs before early stopping watches: ``min_epochs``, leaving at least the last epoch to watch."""
    return max(0, min(config.min_epochs, config.epochs - 1))


def best_epoch(history: dict[str, list[float]], config: TrainConfig) -> int:
    """The 1-based epoch of lowest validation loss after the warm-up (the one early stopping restored)."""
    warm_up = min(_warm_up(config), len(history["val_loss"]) - 1)
    return warm_up + int(np.argmin(history["val_loss"][warm_up:])) + 1


def train(train_set: Arrays, val_set: Arrays, classes: Sequence[str], config: TrainConfig,
          progress: Progress = log.info, backbone: str = "",
          watchers: Sequence[keras.callbacks.Callback] = ()) -> TrainingResult:
    """Fit a fresh model; early stopping on validation loss restores the best weights.

    Inputs are ``prepare``d first; evaluate the model on arrays passed through ``ready_for``. With
    ``config.refit`` a second fresh model is then fitted on train + val for the best epoch count, with
    the learning rates the first run used: the validation speakers' clips also teach the model.
    ``backbone`` (``PreprocessConfig.backbone``) is what ``config.finetune_backbone`` trains. With
    ``config.linear_head`` the network is trained without those functionals and a logistic regression on them
    joins it (``affectflow.linear_head``; "auto" resolved for ``train_set``), its strength chosen on the
    validation speakers. ``watchers`` (Keras callbacks) see the selecting fit, whose history the result holds, not
    the refit.
    """
    config = resolved(config, train_set)
    train_ready, (val_ready,) = prepare(train_set, [val_set], config)
    model, history = _fit(network_inputs(train_ready, config), network_inputs(val_ready, config), classes, config,
                          config.epochs, progress, backbone=backbone, watchers=watchers)
    selected = TrainingResult(model, history, best_epoch(history, config))
    if config.linear_head != "none":
        network_val = model.predict(network_inputs(val_ready, config).inputs, verbose=0)[EMOTION_OUTPUT]
        selected.linear_strength = choose_strength(network_val, train_ready, val_ready, len(classes), config, progress)
        selected.model = attach(model, train_ready, len(classes), selected.linear_strength, config)
    return refit(selected, train_set, val_set, classes, config, progress, backbone) if config.refit else selected


def refit(selected: TrainingResult, train_set: Arrays, val_set: Arrays, classes: Sequence[str], config: TrainConfig,
          progress: Progress = log.info, backbone: str = "") -> TrainingResult:
    """A fresh model fitted on train + val for ``selected``'s best epoch count, replaying its learning rates."""
    config = resolved(config, train_set)
    progress(f"refitting on train + validation for {selected.best_epoch} epochs")
    everything, _ = prepare(concatenate([train_set, val_set]), [], config)
    model, _ = _fit(network_inputs(everything, config), None, classes, config, selected.best_epoch, progress,
                    selected.history.get("learning_rate", ()), backbone)
    if selected.linear_strength is not None:
        model = attach(model, everything, len(classes), selected.linear_strength, config)
    return TrainingResult(model, selected.history, selected.best_epoch, refit=True,
                          linear_strength=selected.linear_strength)


def ready_for(model: keras.Model, arrays: Arrays, config: TrainConfig) -> Arrays:
    """``arrays`` as ``model`` (trained with ``config``) expects them: speakers aligned to its population
    when ``config.speaker_norm`` and the speakers are known. Inputs the model lacks are ignored anyway."""
    if config.speaker_norm and arrays.speakers is not None and "audio" in arrays.modalities():
        return aligned_for(model, arrays)
    return arrays
