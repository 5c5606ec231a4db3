"""The multitask audio-visual model: encoders per modality, masked fusion, emotion and affect heads.

Inputs (see ``affectflow.features.stack_inputs``): ``frames`` (B, T, S, S, 3) uint8, ``mfcc`` (B, A, n)
float32, ``video_mask`` and ``audio_mask`` (B, 1), 1.0 where the modality is present.
Outputs: ``emotion`` softmax over the class list and/or ``affect`` tanh ``[arousal, valence]``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """In training, hides each modality of a sample with probability ``rate`` (never both at once).

    Teaches the fusion to work when a clip has no face or no audio; the identity at inference.
    """

    def __init__(self, rate: float = 0.15, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, masks, training=False):
        video, audio = masks
        if not training or self.rate <= 0:
            return video, audio
        keep_v = ops.cast(keras.random.uniform(ops.shape(video), seed=self.generator) >= self.rate, video.dtype)
        keep_a = ops.cast(keras.random.uniform(ops.shape(audio), seed=self.generator) >= self.rate, audio.dtype)
        both_dropped = (1.0 - keep_v) * (1.0 - keep_a)
        return video * ops.maximum(keep_v, both_dropped), audio * ops.maximum(keep_a, both_dropped)

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


def _audio_encoder(mfcc, units: int, mfcc_norm: layers.Normalization):
    """Normalised MFCC sequence through two 1-D convolutions and pooling over time."""
    x = mfcc_norm(mfcc)
    x = layers.Conv1D(64, 5, padding="same", activation="relu", name="audio_conv1")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Conv1D(units, 5, padding="same", activation="relu", name="audio_conv2")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    return layers.Dense(units, activation="relu", name="audio_embedding")(x)


def build_model(classes: Sequence[str], num_frames: int, frame_size: int, audio_steps: int, n_mfcc: int,
                config: TrainConfig, mfcc_sample: np.ndarray | None = None) -> keras.Model:
    """Build (uncompiled) the model for ``config.task``; ``mfcc_sample`` adapts the MFCC normaliser."""
    frames = keras.Input((num_frames, frame_size, frame_size, 3), dtype="uint8", name="frames")
    mfcc = keras.Input((audio_steps, n_mfcc), dtype="float32", name="mfcc")
    video_mask = keras.Input((1,), dtype="float32", name="video_mask")
    audio_mask = keras.Input((1,), dtype="float32", name="audio_mask")

    mfcc_norm = layers.Normalization(axis=-1, name="mfcc_norm")
    if mfcc_sample is not None:
        mfcc_norm.adapt(mfcc_sample.reshape(-1, n_mfcc))
    units = config.hidden_units
    video = _video_encoder(frames, units)
    audio = _audio_encoder(mfcc, units, mfcc_norm)

    v_mask, a_mask = ModalityDropout(0.15, seed=config.seed, name="modality_dropout")((video_mask, audio_mask))
    fused = layers.Concatenate(name="fusion")([video * v_mask, audio * a_mask, v_mask, a_mask])
    x = fused
    for i, width in enumerate((units, units // 2)):
        x = layers.Dense(width, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4),
                         name=f"shared_dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"shared_bn{i + 1}")(x)
        x = layers.Dropout(config.dropout, name=f"shared_dropout{i + 1}")(x)

    outputs = {}
    if config.task in ("classification", "multitask"):
        outputs[EMOTION_OUTPUT] = layers.Dense(len(classes), activation="softmax", dtype="float32",
                                               name=EMOTION_OUTPUT)(x)
    if config.task in ("regression", "multitask"):
        outputs[AFFECT_OUTPUT] = layers.Dense(2, activation="tanh", dtype="float32", name=AFFECT_OUTPUT)(x)
    inputs = {"frames": frames, "mfcc": mfcc, "video_mask": video_mask, "audio_mask": audio_mask}
    return keras.Model(inputs, outputs, name=f"affectflow_{config.task}")


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
