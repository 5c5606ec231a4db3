"""What the tests of every tier share: the real data beside the repository, and toy data they build
themselves (model inputs, arrays whose class lives in one modality, tiny backbones)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from affectflow.arrays import Arrays
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import MODEL_INPUTS, blank_features, stack_inputs
from affectflow.model import build_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Small enough to build and run in milliseconds, with every modality.
TOY_CFG = PreprocessConfig(num_frames=4, frame_size=32, audio_seconds=0.5)
BACKBONE_CFG = PreprocessConfig(num_frames=4, frame_size=16, audio_seconds=0.5, face_backend="none")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not available: {path} (needs ../shared/data beside the repo)")
    return path


def model_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of every modality, shaped by ``TOY_CFG``."""
    rng = np.random.default_rng(seed)
    t, size = TOY_CFG.num_frames, TOY_CFG.frame_size
    return {
        "frames": rng.integers(0, 256, (batch, t, size, size, 3), dtype=np.uint8),
        "mfcc": rng.normal(size=(batch, TOY_CFG.audio_steps, TOY_CFG.n_mfcc)).astype("float32"),
        "logmel": rng.normal(size=(batch, TOY_CFG.audio_steps, TOY_CFG.n_mels)).astype("float32"),
        "video_mask": np.ones((batch, 1), "float32"),
        "audio_mask": np.ones((batch, 1), "float32"),
        "face": rng.normal(size=(batch, t, 10)).astype("float32"),
        "face_crops": rng.integers(0, 256, (batch, t, 16, 16, 1), dtype=np.uint8),
        "face_mask": np.ones((batch, t), "float32"),
    }


def small_model(task: str = "multitask") -> keras.Model:
    config = replace(TrainConfig(), task=task, hidden_units=16)
    shapes = {name: array.shape[1:] for name, array in model_inputs(1).items()}
    return build_model(["anger", "happiness", "sadness"], shapes, config, samples=model_inputs(8))


def audio_signal_arrays(n: int, seed: int, audio_present: float = 1.0) -> Arrays:
    """Video frames are one flat grey (a camera that sees nothing); the MFCC mean follows the class.
    ``audio_present``: share of clips with audio."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    has_audio = (rng.random(n) < audio_present).astype("float32")
    mfcc = (rng.normal(size=(n, 10, 40)) + 3.0 * labels[:, None, None]) * has_audio[:, None, None]
    inputs = {"frames": np.full((n, 4, 16, 16, 3), 128, np.uint8), "mfcc": mfcc.astype("float32"),
              "video_mask": np.ones((n, 1), "float32"), "audio_mask": has_audio[:, None]}
    affect = np.stack([labels - 1.0, 1.0 - labels], axis=1).astype("float32") * 0.5
    return Arrays(inputs, labels, affect, np.array([f"s{i % 4}" for i in range(n)]))


def audio_only(n: int, seed: int) -> Arrays:
    """Audio clips plus the zero frames (video mask 0) that an audio-only corpus's records hold."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    inputs = {"frames": np.zeros((n, 4, 16, 16, 3), np.uint8), "video_mask": np.zeros((n, 1), "float32"),
              "mfcc": (rng.normal(size=(n, 10, 40)) + labels[:, None, None]).astype("float32"),
              "audio_mask": np.ones((n, 1), "float32")}
    return Arrays(inputs, labels, np.zeros((n, 2), "float32"), np.array([f"s{i % 3}" for i in range(n)]))


def voices(seed: int = 0, per_speaker: int = 8) -> Arrays:
    """Three speakers with their own MFCC offset and scale; the last 3 frames of each clip are padding."""
    rng = np.random.default_rng(seed)
    mfcc, speakers = [], []
    for s, (offset, scale) in enumerate([(-3.0, 0.5), (0.0, 1.0), (4.0, 2.0)]):
        for _ in range(per_speaker):
            clip = rng.normal(offset, scale, size=(10, 40))
            clip[7:] = 0.0
            clip[7:, 0] = -500.0  # a flat spectrum: only the 0th coefficient is non-zero
            mfcc.append(clip)
            speakers.append(f"s{s}")
    n = len(mfcc)
    inputs = {"mfcc": np.asarray(mfcc, "float32"), "audio_mask": np.ones((n, 1), "float32")}
    labels = np.arange(n) % 2
    return Arrays(inputs, labels, np.zeros((n, 2), "float32"), np.array(speakers))


def clip_model(seed: int = 0) -> keras.Model:
    """16 x 32 x 32 RGB clips -> 8 numbers: a strided convolution per frame, pooled, projected."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((16, 32, 32, 3)), layers.TimeDistributed(layers.Conv2D(4, 3, strides=4)),
                             layers.GlobalAveragePooling3D(), layers.Dense(8)])


def frame_model() -> keras.Model:
    """Single 32 x 32 images -> 8 numbers (a per-frame backbone)."""
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3, strides=4),
                             layers.GlobalAveragePooling2D(), layers.Dense(8)])


def export_backbones(folder: Path) -> dict[str, Path]:
    """Tiny backbones in both formats a user may give: a clip model as ``.keras`` and SavedModel, another
    clip model, and a per-frame model."""
    model = clip_model()
    model.save(folder / "clip.keras")
    model.export(str(folder / "clip_savedmodel"), verbose=False)
    clip_model(seed=5).save(folder / "other.keras")
    frame_model().save(folder / "frame.keras")
    return {"keras": folder / "clip.keras", "saved_model": folder / "clip_savedmodel",
            "other": folder / "other.keras", "frame": folder / "frame.keras"}


def separable_records(cfg: PreprocessConfig, n: int = 24) -> tuple[list, np.ndarray]:
    """Clips whose backbone embedding alone tells the two classes apart (video present, no audio)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    records = []
    for label in labels:
        record = blank_features(cfg)
        record.video_mask = 1.0
        record.backbone = (rng.normal(size=8) + (3.0 if label else -3.0)).astype(np.float32)
        records.append(record)
    return records, labels


def arrays_of(records: list, labels: np.ndarray, names=(*MODEL_INPUTS, "backbone")) -> Arrays:
    return Arrays(stack_inputs(records, names), labels.astype(np.int64), np.zeros((len(labels), 2), np.float32))


def cli_env(home) -> dict[str, str]:
    """The environment of an ``affectflow`` command run on the test home ``home`` (``Paths``) in a subprocess,
    as a user's shell has it: the variables an earlier ``activate_home`` of this test process set for another
    home (PREFECT_HOME, say) would otherwise look like the user's own settings to the child."""
    return {**os.environ, "AFFECTFLOW_HOME": str(home.home), "PREFECT_HOME": str(home.prefect_home),
            "BENTOML_HOME": str(home.bentoml_home)}
