"""The multitask audio-visual model: encoders per modality, masked fusion, emotion and affect heads.

Inputs (see ``affectflow.features.stack_inputs``), each modality optional: video ``frames``
(B, T, S, S, 3) uint8 with ``video_mask`` (B, 1); audio features (``mfcc``, optionally
``mfcc_deltas``, ``logmel``: (B, A, n), and/or the clip's eGeMAPS functionals ``egemaps`` (B, 88)) with
``audio_mask`` (B, 1); the face: ``face`` (B, T, F),
``face_crops`` (B, T, C, C, 1) uint8, ``face_mask`` (B, T); a pre-trained backbone's cached embedding
``backbone`` (B, D), part of the video modality. Training builds encoders only for the modalities its
corpus carries (``training.prepare``): an audio-only corpus gives an audio-only model.
Outputs: ``emotion`` softmax over the class list and/or ``affect`` tanh ``[arousal, valence]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
from keras import layers, ops

from affectflow.backbone import Backbone, trainable_backbone
from affectflow.config import FUNCTIONAL_SETS, TrainConfig

EMOTION_OUTPUT = "emotion"
AFFECT_OUTPUT = "affect"


def output_heads(task: str) -> tuple[str, ...]:
    """The heads a model of ``task`` has: ``emotion`` (softmax over the classes), ``affect`` ([arousal, valence])."""
    return {"classification": (EMOTION_OUTPUT,), "regression": (AFFECT_OUTPUT,),
            "multitask": (EMOTION_OUTPUT, AFFECT_OUTPUT)}[task]
# An audio frame whose MFCC 1..n all stay below this is silence or padding (a flat log-mel spectrum).
SILENCE_MFCC = 1e-3


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


def _per_frame(layer: layers.Layer, clips):
    """``layer`` on every frame of ``clips`` (B, T, ...) at once, as one batch of B * T frames.

    Not ``TimeDistributed``: over a static time axis it unrolls the layer once per frame, and 16 copies of the
    frame CNN (and of their gradients) made building each training graph the bulk of a short fit's time.
    """
    frames = layer(ops.reshape(clips, (-1, *clips.shape[2:])))
    return ops.reshape(frames, (-1, clips.shape[1], *frames.shape[1:]))


def _conv_bn_relu(width: int) -> list[layers.Layer]:
    """A strided 3x3 convolution, batch normalisation, ReLU."""
    return [layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.Activation("relu")]


def _video_encoder(frames, units: int):
    """Small per-frame CNN, then temporal convolution and pooling over the sampled frames.

    Batch normalisation after each convolution: without it the pooled features of small, mostly static
    frames barely differ between clips and the branch learns nothing (seen on the synthetic corpus).
    """
    x = layers.Rescaling(1.0 / 255, name="frames_scale")(ops.cast(frames, "float32"))
    frame_cnn = keras.Sequential([*_conv_bn_relu(16), *_conv_bn_relu(32), *_conv_bn_relu(64),
                                  layers.GlobalAveragePooling2D()], name="frame_cnn")
    x = _per_frame(frame_cnn, x)
    x = layers.Conv1D(units, 3, padding="same", activation="relu", name="video_temporal")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    return layers.Dense(units, activation="relu", name="video_embedding")(x)


@keras.saving.register_keras_serializable(package="affectflow")
class SpecAugment(layers.Layer):
    """In training, zeroes ``masks`` random time spans and ``masks`` random feature bands of each clip.

    SpecAugment (Park et al. 2019) on normalised features, where zero is the training mean: the model
    cannot lean on any one moment or band. Spans are up to ``max_time`` steps and ``max_bands`` features
    wide; the identity at inference.
    """

    def __init__(self, masks: int = 2, max_time: int = 30, max_bands: int = 20, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.masks, self.max_time, self.max_bands, self.seed = masks, max_time, max_bands, seed
        self.generator = keras.random.SeedGenerator(seed)

    def _keep(self, batch, length, width: int, axis: int):
        """1 outside one random span per clip along ``axis`` (1: time, 2: features), 0 inside it."""
        shape = (batch, 1, 1)
        span = keras.random.uniform(shape, 0, width, seed=self.generator)
        start = keras.random.uniform(shape, 0, 1, seed=self.generator) * ops.cast(length, "float32")
        position = ops.cast(ops.arange(length), "float32")
        position = ops.reshape(position, (1, -1, 1) if axis == 1 else (1, 1, -1))
        return ops.cast((position < start) | (position >= start + span), "float32")

    def call(self, x, training=False):
        if not training or self.masks <= 0:
            return x
        batch, steps, features = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        keep = ops.ones_like(x)
        for _ in range(self.masks):
            keep = keep * self._keep(batch, steps, self.max_time, 1) * self._keep(batch, features, self.max_bands, 2)
        return x * keep

    def get_config(self):
        return {**super().get_config(), "masks": self.masks, "max_time": self.max_time,
                "max_bands": self.max_bands, "seed": self.seed}


def active_frames(mfcc):
    """(B, A) 1.0 for audio frames with sound, 0.0 for digital silence and the zero padding of the
    fixed-length window: there the log-mel spectrum is flat, so every MFCC but the 0th vanishes."""
    return ops.cast(ops.max(ops.abs(mfcc[..., 1:]), axis=-1) > SILENCE_MFCC, "float32")


def sound_frames(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n, A) bool, numpy: ``active_frames`` of the clips that have audio (``audio_mask``)."""
    present = inputs["audio_mask"][:, :1] > 0 if "audio_mask" in inputs else True
    return (np.abs(inputs["mfcc"][..., 1:]).max(axis=-1) > SILENCE_MFCC) & present


def _masked_statistics(x, frame_mask):
    """Mean and standard deviation over the frames where ``frame_mask`` is 1 (utterance functionals)."""
    weights = ops.expand_dims(frame_mask, -1)
    count = ops.maximum(ops.sum(weights, axis=1), 1.0)
    mean = ops.sum(x * weights, axis=1) / count
    variance = ops.sum(ops.square(x - ops.expand_dims(mean, 1)) * weights, axis=1) / count
    return ops.concatenate([mean, ops.sqrt(variance + 1e-6)], axis=-1)


def _audio_encoder(audio_inputs: dict, config: TrainConfig, samples: Mapping[str, np.ndarray]):
    """Audio features normalised (statistics of the training set) and stacked per time step, then
    ``config.audio_encoder``:

    - ``stats``: mean and standard deviation of every feature over the frames with sound;
    - ``conv``: SpecAugment, two 1-D convolutions over time, mean and std of their maps over those frames;
    - ``hybrid``: both, side by side.

    Normalisers and statistics ignore silence and padding (``active_frames``), so a 2 s utterance in a
    3 s window is described by its 2 s.
    """
    units = config.hidden_units
    active = active_frames(audio_inputs["mfcc"])
    sound = sound_frames(samples) if "mfcc" in samples else None
    parts = []
    for name, tensor in audio_inputs.items():
        norm = layers.Normalization(axis=-1, name=f"{name}_norm")
        if name in samples:  # statistics of the frames with sound: silence and padding would skew them
            values = samples[name]
            norm.adapt(values[sound] if sound is not None and sound.any() else values.reshape(-1, values.shape[-1]))
        parts.append(norm(tensor))
    x = parts[0] if len(parts) == 1 else layers.Concatenate(name="audio_features")(parts)
    branches = []
    if config.audio_encoder in ("stats", "hybrid"):
        stats = layers.BatchNormalization(name="audio_stats_bn")(_masked_statistics(x, active))
        branches.append(layers.Dropout(config.dropout, name="audio_stats_dropout")(stats))
    if config.audio_encoder in ("conv", "hybrid"):
        h = SpecAugment(config.spec_augment, seed=config.seed, name="spec_augment")(x)
        h = layers.Conv1D(64, 5, padding="same", name="audio_conv1")(h)
        h = layers.Activation("relu")(layers.BatchNormalization(name="audio_conv1_bn")(h))
        h = layers.MaxPooling1D(2, name="audio_pool")(h)
        pooled_active = layers.MaxPooling1D(2)(ops.expand_dims(active, -1))[..., 0]
        h = layers.Conv1D(units, 5, padding="same", name="audio_conv2")(h)
        h = layers.Activation("relu")(layers.BatchNormalization(name="audio_conv2_bn")(h))
        conv = _masked_statistics(h, pooled_active)
        branches.append(layers.Dropout(config.dropout, name="audio_conv_dropout")(conv))
    x = branches[0] if len(branches) == 1 else layers.Concatenate(name="audio_branches")(branches)
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
    appearance = _per_frame(crop_cnn, layers.Rescaling(1.0 / 255, name="crops_scale")(ops.cast(crops, "float32")))
    x = layers.Concatenate()([_masked_mean_over_time(geometry, frame_mask),
                              _masked_mean_over_time(appearance, frame_mask)])
    return layers.Dense(units, activation="relu", name="face_embedding")(x)


def _backbone_encoder(embedding, units: int, sample: np.ndarray | None):
    """A frozen backbone's cached clip embedding, normalised with the training clips' statistics."""
    norm = layers.Normalization(axis=-1, name="backbone_norm")
    if sample is not None:
        norm.adapt(sample)
    return layers.Dense(units, activation="relu", name="backbone_embedding")(norm(embedding))


# Functional sets that outnumber a corpus's clips, and their (input dropout, L2 of the dense layer): ComParE's 6373
# functionals overfit a few hundred clips within 20 epochs (EmoDB, seed 13: pooled UAR 0.716 with the shared
# dropout and no L2, 0.757 with these; docs/model.md).
WIDE_FUNCTIONALS: dict[str, tuple[float, float]] = {"compare": (0.5, 1e-3)}


def _functionals_encoder(name: str, functionals, config: TrainConfig, sample: np.ndarray | None):
    """The clip's openSMILE functionals ``name`` (eGeMAPS, ComParE), normalised with the statistics of the
    training clips with audio (openSMILE's raw values span orders of magnitude: Hz, dB, ratios), then one dense
    layer (regularised harder for ``WIDE_FUNCTIONALS``)."""
    norm = layers.Normalization(axis=-1, name=f"{name}_norm")
    if sample is not None:
        norm.adapt(sample)
    rate, l2 = WIDE_FUNCTIONALS.get(name, (config.dropout, 0.0))
    x = layers.Dropout(rate, name=f"{name}_dropout")(norm(functionals))
    return layers.Dense(config.hidden_units, activation="relu", name=f"{name}_embedding",
                        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)


def _finetuned_encoder(frames, backbone: Backbone, units: int):
    """The backbone itself, trainable, over the clip's frames (``backbone.Backbone`` input convention):
    resized to its frame size, re-sampled to its clip length, image models averaged over time."""
    model = trainable_backbone(backbone)
    x = ops.cast(frames, "float32")
    if tuple(frames.shape[2:4]) != (backbone.height, backbone.width):
        x = _per_frame(layers.Resizing(backbone.height, backbone.width, name="backbone_resize"), x)
    if not backbone.uint8_input:
        x = layers.Rescaling(1.0 / 255, name="backbone_scale")(x)
    if backbone.frames is not None and frames.shape[1] != backbone.frames:
        from affectflow.media import sample_indices

        x = ops.take(x, sample_indices(frames.shape[1], backbone.frames), axis=1)
    if backbone.per_frame:
        x = ops.mean(_per_frame(model, x), axis=1)
    else:
        x = model(x)
    return layers.Dense(units, activation="relu", name="backbone_embedding")(x)


AUDIO_INPUTS = ("mfcc", "mfcc_deltas", "logmel")


def build_model(classes: Sequence[str], shapes: Mapping[str, tuple[int, ...]], config: TrainConfig,
                samples: Mapping[str, np.ndarray] | None = None, finetune: Backbone | None = None) -> keras.Model:
    """Build (uncompiled) the model for ``config.task`` over the inputs named in ``shapes``.

    ``shapes`` maps input names (see ``affectflow.features.stack_inputs``) to per-clip shapes; an
    encoder exists for each modality whose inputs are there: video (``frames``, ``video_mask``), audio
    (``mfcc`` and any of ``mfcc_deltas``, ``logmel``, and/or functionals ``egemaps``, ``compare``, with
    ``audio_mask``), face (``face``, ``face_crops``, ``face_mask``), frozen backbone (``backbone`` with ``video_mask``). ``samples``
    (training arrays) adapt the normalisers. ``finetune``: a ``.keras`` backbone trained inside the model
    on ``frames``, in place of the small video CNN.
    """
    samples = samples or {}
    dtypes = {"frames": "uint8", "face_crops": "uint8"}
    inputs = {name: keras.Input(tuple(shape), dtype=dtypes.get(name, "float32"), name=name)
              for name, shape in shapes.items()}
    units = config.hidden_units
    embeddings, masks = [], []
    video = []
    if "frames" in inputs:
        video.append(_finetuned_encoder(inputs["frames"], finetune, units) if finetune is not None
                     else _video_encoder(inputs["frames"], units))
    if "backbone" in inputs:
        present = samples["backbone"][samples["video_mask"][:, 0] > 0] if "backbone" in samples else None
        video.append(_backbone_encoder(inputs["backbone"], units,
                                       present if present is not None and len(present) else None))
    if video:  # one modality: the small CNN and a frozen backbone share the video mask
        embeddings.append(video[0] if len(video) == 1 else layers.Concatenate(name="video_parts")(video))
        masks.append(inputs["video_mask"])
    audio = []
    if "mfcc" in inputs:
        audio.append(_audio_encoder({k: inputs[k] for k in AUDIO_INPUTS if k in inputs}, config, samples))
    for name in (n for n in FUNCTIONAL_SETS if n in inputs):
        voiced = samples[name][samples["audio_mask"][:, 0] > 0] if name in samples else None
        audio.append(_functionals_encoder(name, inputs[name], config,
                                          voiced if voiced is not None and len(voiced) else None))
    if audio:  # one modality: frame features and clip functionals share the audio mask
        embeddings.append(audio[0] if len(audio) == 1 else layers.Concatenate(name="audio_parts")(audio))
        masks.append(inputs["audio_mask"])
    if "face" in inputs:
        found = samples["face"][samples["face_mask"] > 0] if "face" in samples else None
        embeddings.append(_face_encoder(inputs["face"], inputs["face_crops"], inputs["face_mask"], units,
                                        found if found is not None and len(found) else None))
        masks.append(ops.max(inputs["face_mask"], axis=1, keepdims=True))
    if not embeddings:
        raise ValueError(f"no modality among the inputs {sorted(shapes)}: need frames, backbone, mfcc, egemaps "
                         "or face")

    masks = ModalityDropout(config.modality_dropout, seed=config.seed, name="modality_dropout")(masks)
    x = layers.Concatenate(name="fusion")([e * m for e, m in zip(embeddings, masks)] + list(masks))
    for i, width in enumerate((units, units // 2)[:config.shared_layers]):
        x = layers.Dense(width, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4),
                         name=f"shared_dense{i + 1}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"shared_bn{i + 1}")(x)  # few steps per epoch
        x = layers.Dropout(config.dropout, name=f"shared_dropout{i + 1}")(x)

    outputs = {}
    heads = output_heads(config.task)
    if EMOTION_OUTPUT in heads:
        outputs[EMOTION_OUTPUT] = layers.Dense(len(classes), activation="softmax", dtype="float32",
                                               name=EMOTION_OUTPUT)(x)
    if AFFECT_OUTPUT in heads:
        # Zero-initialised: tanh starts in its linear range. Glorot weights over unit-variance
        # (batch-normalised) features start it saturated, where the CCC gradient hardly flows and the
        # predictions stay over-dispersed.
        outputs[AFFECT_OUTPUT] = layers.Dense(2, activation="tanh", kernel_initializer="zeros", dtype="float32",
                                              name=AFFECT_OUTPUT)(x)
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
