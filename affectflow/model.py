"""The multitask audio-visual model: encoders per modality, masked fusion, emotion and affect heads.

Inputs (see ``affectflow.features.stack_inputs``): ``frames`` (B, T, S, S, 3) uint8, audio features
(``mfcc``, optionally ``mfcc_deltas``, ``logmel``: (B, A, n)), ``video_mask`` and ``audio_mask`` (B, 1),
and optionally the face: ``face`` (B, T, F), ``face_crops`` (B, T, C, C, 1) uint8, ``face_mask`` (B, T).
Outputs: ``emotion`` softmax over the class list and/or ``affect`` tanh ``[arousal, valence]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
from keras import layers, ops

from affectflow.config import TrainConfig

EMOTION_OUTPUT = "emotion"
AFFECT_OUTPUT = "affect"


@keras.saving.register_keras_serializable(package="affectflow")
def ccc_loss(y_true, y_pred):
    """1 - CCC averaged over the output dimensions, with moments over the batch.

    CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2) per column; eps keeps it finite
    for a constant batch. Batch moments are only the training signal: reported CCC is computed over the
    whole evaluation set (``affectflow.metrics.ccc``).
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    mean_t, mean_p = ops.mean(y_true, axis=0), ops.mean(y_pred, axis=0)
    var_t, var_p = ops.var(y_true, axis=0), ops.var(y_pred, axis=0)
    covariance = ops.mean((y_true - mean_t) * (y_pred - mean_p), axis=0)
    ccc = 2.0 * covariance / (var_t + var_p + ops.square(mean_t - mean_p) + 1e-7)
    return 1.0 - ops.mean(ccc)


@keras.saving.register_keras_serializable(package="affectflow")
class ModalityDropout(layers.Layer):
    """In training, hides each modality of a sample with probability ``rate``, never all at once.

    Takes a list of (B, 1) masks. Teaches the fusion to work when a clip has no face or no audio;
    the identity at inference.
    """

    def __init__(self, rate: float = 0.15, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, masks, training=False):
        masks = list(masks)
        if not training or self.rate <= 0:
            return masks
        keeps = [ops.cast(keras.random.uniform(ops.shape(m), seed=self.generator) >= self.rate, m.dtype)
                 for m in masks]
        kept = [m * k for m, k in zip(masks, keeps)]
        # A sample whose present modalities were all hidden keeps them all.
        nothing_left = ops.cast(ops.sum(ops.concatenate(kept, axis=-1), axis=-1, keepdims=True) == 0, masks[0].dtype)
        return [ops.maximum(k, m * nothing_left) for k, m in zip(kept, masks)]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _video_encoder(frames, units: int):
    """Small per-frame CNN, then temporal convolution and pooling over the sampled frames."""
    x = layers.Rescaling(1.0 / 255, name="frames_scale")(ops.cast(frames, "float32"))
    frame_cnn = keras.Sequential([
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        layers.GlobalAveragePooling2D(),
    ], name="frame_cnn")
    x = layers.TimeDistributed(frame_cnn, name="per_frame")(x)
    x = layers.Conv1D(units, 3, padding="same", activation="relu", name="video_temporal")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    return layers.Dense(units, activation="relu", name="video_embedding")(x)


def _audio_encoder(audio_inputs: dict, units: int, samples: Mapping[str, np.ndarray]):
    """Each audio feature normalised (statistics of the training set), stacked per time step, then two
    1-D convolutions and pooling over time."""
    parts = []
    for name, tensor in audio_inputs.items():
        norm = layers.Normalization(axis=-1, name=f"{name}_norm")
        if name in samples:
            norm.adapt(samples[name].reshape(-1, samples[name].shape[-1]))
        parts.append(norm(tensor))
    x = parts[0] if len(parts) == 1 else layers.Concatenate(name="audio_features")(parts)
    x = layers.Conv1D(64, 5, padding="same", activation="relu", name="audio_conv1")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(units, 5, padding="same", activation="relu", name="audio_conv2")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    return layers.Dense(units, activation="relu", name="audio_embedding")(x)


def _masked_mean_over_time(x, frame_mask):
    """Mean over the frames where a face was found (zeros when none was)."""
    weights = ops.expand_dims(frame_mask, -1)
    return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


def _face_encoder(face, crops, frame_mask, units: int, face_sample: np.ndarray | None):
    """Per-frame face features (pose, AU estimates, landmark geometry) and aligned gray crops,
    averaged over the frames with a face."""
    norm = layers.Normalization(axis=-1, name="face_norm")
    if face_sample is not None:
        norm.adapt(face_sample.reshape(-1, face_sample.shape[-1]))
    geometry = layers.Dense(units, activation="relu", name="face_frame_dense")(norm(face))
    crop_cnn = keras.Sequential([
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        layers.GlobalAveragePooling2D(),
    ], name="face_crop_cnn")
    appearance = layers.TimeDistributed(crop_cnn, name="per_face_crop")(
        layers.Rescaling(1.0 / 255, name="crops_scale")(ops.cast(crops, "float32")))
    x = layers.Concatenate()([_masked_mean_over_time(geometry, frame_mask),
                              _masked_mean_over_time(appearance, frame_mask)])
    return layers.Dense(units, activation="relu", name="face_embedding")(x)


AUDIO_INPUTS = ("mfcc", "mfcc_deltas", "logmel")


def build_model(classes: Sequence[str], shapes: Mapping[str, tuple[int, ...]], config: TrainConfig,
                samples: Mapping[str, np.ndarray] | None = None) -> keras.Model:
    """Build (uncompiled) the model for ``config.task`` over the inputs named in ``shapes``.

    ``shapes`` maps input names (see ``affectflow.features.stack_inputs``) to per-clip shapes; the face
    branch exists when ``face`` is among them. ``samples`` (training arrays) adapt the normalisers.
    """
    samples = samples or {}
    dtypes = {"frames": "uint8", "face_crops": "uint8"}
    inputs = {name: keras.Input(tuple(shape), dtype=dtypes.get(name, "float32"), name=name)
              for name, shape in shapes.items()}
    units = config.hidden_units
    embeddings = [_video_encoder(inputs["frames"], units),
                  _audio_encoder({k: inputs[k] for k in AUDIO_INPUTS if k in inputs}, units, samples)]
    masks = [inputs["video_mask"], inputs["audio_mask"]]
    if "face" in inputs:
        found = samples["face"][samples["face_mask"] > 0] if "face" in samples else None
        embeddings.append(_face_encoder(inputs["face"], inputs["face_crops"], inputs["face_mask"], units,
                                        found if found is not None and len(found) else None))
        masks.append(ops.max(inputs["face_mask"], axis=1, keepdims=True))

    masks = ModalityDropout(0.15, seed=config.seed, name="modality_dropout")(masks)
    x = layers.Concatenate(name="fusion")([e * m for e, m in zip(embeddings, masks)] + list(masks))
    for i, width in enumerate((units, units // 2)):
        x = layers.Dense(width, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4),
                         name=f"shared_dense{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"shared_bn{i + 1}")(x)  # few steps per epoch
        x = layers.Dropout(config.dropout, name=f"shared_dropout{i + 1}")(x)

    outputs = {}
    if config.task in ("classification", "multitask"):
        outputs[EMOTION_OUTPUT] = layers.Dense(len(classes), activation="softmax", dtype="float32",
                                               name=EMOTION_OUTPUT)(x)
    if config.task in ("regression", "multitask"):
        outputs[AFFECT_OUTPUT] = layers.Dense(2, activation="tanh", dtype="float32", name=AFFECT_OUTPUT)(x)
    return keras.Model(inputs, outputs, name=f"affectflow_{config.task}")


def input_names(model: keras.Model) -> list[str]:
    """The names of the arrays ``model`` takes (a subset of what ``stack_inputs`` can produce)."""
    return [tensor.name for tensor in model.inputs]


def compile_model(model: keras.Model, config: TrainConfig) -> keras.Model:
    """AdamW; loss = ce_weight x cross-entropy + ccc_weight x (1 - CCC) for the heads that exist."""
    losses, weights = {}, {}
    if EMOTION_OUTPUT in model.output_names:
        losses[EMOTION_OUTPUT], weights[EMOTION_OUTPUT] = "sparse_categorical_crossentropy", config.ce_weight
    if AFFECT_OUTPUT in model.output_names:
        losses[AFFECT_OUTPUT], weights[AFFECT_OUTPUT] = ccc_loss, config.ccc_weight
    optimizer = keras.optimizers.AdamW(learning_rate=config.learning_rate, weight_decay=config.weight_decay)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights)
    return model
