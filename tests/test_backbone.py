"""User-supplied pre-trained backbones: both formats, checks, cached embeddings, training, serving, fine-tuning.

The backbones are tiny models the tests export themselves (nothing is downloaded).
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from keras import layers

from affectflow.backbone import BackboneError, load_backbone
from affectflow.cache import FeatureCache, preprocess_clips
from affectflow.config import PreprocessConfig, TrainConfig, with_backbone
from affectflow.crossval import cross_validate
from affectflow.features import (
    MODEL_INPUTS,
    blank_features,
    extract_features,
    load_features,
    save_features,
    stack_inputs,
)
from affectflow.media import read_sampled
from affectflow.model import input_names
from affectflow.packaging import model_store, save_to_bentoml
from affectflow.predict import ModelCard, Predictor
from affectflow.registry import configure, load_predictor, log_training
from affectflow.training import Arrays, train

CFG = PreprocessConfig(num_frames=4, frame_size=16, audio_seconds=0.5, face_backend="none")
CLASSES = ["anger", "happiness"]
FAST = replace(TrainConfig(), task="classification", epochs=12, batch_size=8, hidden_units=16, learning_rate=1e-2,
               min_epochs=0, modality_dropout=0.0, speaker_norm=False)


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


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backbones")
    model = clip_model()
    model.save(folder / "clip.keras")
    model.export(str(folder / "clip_savedmodel"), verbose=False)
    clip_model(seed=5).save(folder / "other.keras")
    frame_model().save(folder / "frame.keras")
    return {"keras": folder / "clip.keras", "saved_model": folder / "clip_savedmodel",
            "other": folder / "other.keras", "frame": folder / "frame.keras"}


def random_frames(count: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 64, 3), dtype=np.uint8)


def test_both_formats_give_the_same_embedding(exported):
    from_keras, from_saved = load_backbone(exported["keras"]), load_backbone(exported["saved_model"])
    assert (from_keras.format, from_saved.format) == ("keras", "saved_model")
    for backbone in (from_keras, from_saved):
        assert (backbone.height, backbone.width, backbone.frames, backbone.dim) == (32, 32, 16, 8)
    frames = random_frames()
    embedding = from_keras.embed(frames)
    assert embedding.shape == (8,) and embedding.dtype == np.float32
    np.testing.assert_allclose(from_saved.embed(frames), embedding, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(from_keras.embed(frames), embedding)
    assert load_backbone(exported["keras"]) is from_keras  # loaded once per process


def test_a_per_frame_backbone_is_averaged_over_time(exported):
    backbone = load_backbone(exported["frame"])
    assert backbone.per_frame and backbone.frames is None
    frames = random_frames(4)
    per_frame = [backbone.embed(frame[None]) for frame in frames]
    np.testing.assert_allclose(backbone.embed(frames), np.mean(per_frame, axis=0), rtol=1e-5, atol=1e-6)


def test_unusable_backbones_are_refused_with_the_reason(exported, tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        load_backbone(tmp_path / "missing.keras")
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(BackboneError, match="expected a .keras file or a TensorFlow SavedModel"):
        load_backbone(tmp_path / "weights.bin")
    (tmp_path / "broken.keras").write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(BackboneError, match="cannot load the Keras model"):
        load_backbone(tmp_path / "broken.keras")
    keras.Sequential([keras.Input((10,)), layers.Dense(4)]).save(tmp_path / "vector.keras")
    with pytest.raises(BackboneError, match=r"expected \(batch, T, H, W, 3\) clips"):
        load_backbone(tmp_path / "vector.keras")
    keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(4, 3)]).save(tmp_path / "maps.keras")
    with pytest.raises(BackboneError, match="one embedding vector"):
        load_backbone(tmp_path / "maps.keras")


def test_the_backbone_content_not_its_path_keys_the_cache(exported, tmp_path):
    assert PreprocessConfig().hash() == "cbaa00953a7f87dc"  # the hash before backbones existed: caches stay valid
    assert with_backbone(PreprocessConfig(), None).hash() == PreprocessConfig().hash()
    cfg = with_backbone(CFG, exported["keras"])
    assert cfg.backbone == str(exported["keras"]) and len(cfg.backbone_hash) == 64
    moved = tmp_path / "elsewhere" / "renamed.keras"
    moved.parent.mkdir()
    shutil.copy(exported["keras"], moved)
    assert with_backbone(CFG, moved).hash() == cfg.hash()
    assert with_backbone(CFG, exported["other"]).hash() != cfg.hash()
    assert cfg.hash() != CFG.hash()
    assert with_backbone(CFG, exported["saved_model"]).hash() not in (cfg.hash(), CFG.hash())


def test_embeddings_are_computed_once_and_cached(exported, make_clip, tmp_path):
    cfg = with_backbone(CFG, exported["saved_model"])
    clip, audio_only = make_clip("talk.mp4", seconds=0.6), make_clip("voice.wav", seconds=0.6, video=False)
    first = FeatureCache(tmp_path / "cache", cfg)
    record = first.get_or_compute(clip)
    assert first.computed == 1
    # Embedded from the working frames (not the 16-pixel model frames), as the backbone sees them directly.
    video = read_sampled(clip, cfg.num_frames, cfg.face_width)
    np.testing.assert_allclose(record.backbone, load_backbone(cfg.backbone).embed(video.frames), rtol=1e-5, atol=1e-6)
    assert record.backbone.shape == (8,) and record.frames.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(first.get_or_compute(audio_only).backbone, np.zeros(8, np.float32))

    again = FeatureCache(tmp_path / "cache", cfg)
    np.testing.assert_array_equal(again.get_or_compute(clip).backbone, record.backbone)
    assert (again.computed, again.hits) == (0, 1)
    moved = tmp_path / "moved_savedmodel"
    shutil.copytree(exported["saved_model"], moved)
    results = preprocess_clips([clip], tmp_path / "cache", with_backbone(CFG, moved))
    assert results[0].cached


def test_records_without_an_embedding_still_load(tmp_path):
    record = tmp_path / "old.npz"
    save_features(record, blank_features(CFG))
    with zipfile.ZipFile(record) as old, zipfile.ZipFile(tmp_path / "older.npz", "w") as older:
        for name in old.namelist():
            if name != "backbone.npy":
                older.writestr(name, old.read(name))
    assert load_features(tmp_path / "older.npz").backbone.shape == (0,)


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


def test_a_model_trained_on_embeddings_predicts_and_needs_its_backbone(exported, make_clip, home, tmp_path):
    shutil.copy(exported["keras"], tmp_path / "backbone.keras")
    cfg = with_backbone(CFG, tmp_path / "backbone.keras")
    records, labels = separable_records(cfg)
    data = arrays_of(records, labels)
    trained = train(data, data, CLASSES, FAST, progress=lambda _: None)
    model = trained.model
    assert "backbone" in input_names(model) and "mfcc" not in input_names(model)

    predictor = Predictor(model, ModelCard(tuple(CLASSES), cfg, "classification"))
    predicted = [CLASSES.index(p["emotion"]) for p in predictor.predict_features(records)]
    assert np.mean(np.array(predicted) == labels) >= 0.9
    clip = make_clip("new.mp4", seconds=0.6)
    result = predictor.predict_clip(clip)
    assert result["emotion"] in CLASSES and result["modalities"]["video"]
    tag = save_to_bentoml(model, predictor.card)
    configure(home)
    registered = log_training(trained, predictor.card, FAST, "toy", stack_inputs(records[:2], input_names(model)), {})

    (tmp_path / "backbone.keras").unlink()
    with pytest.raises(BackboneError, match=r"trained with backbone [0-9a-f]{16} at .*backbone.keras; file not found"):
        Predictor(model, ModelCard(tuple(CLASSES), cfg, "classification"))
    stored = model_store().get(tag)  # the packaged model carries its own copy of the backbone
    packaged = Predictor.from_dir(stored.path, stored.info.metadata)
    assert packaged.predict_clip(clip)["probabilities"] == pytest.approx(result["probabilities"], abs=1e-5)
    logged = load_predictor(registered.uri)  # so does the MLflow run
    assert logged.predict_clip(clip)["probabilities"] == pytest.approx(result["probabilities"], abs=1e-5)


def test_fine_tuning_trains_the_backbone_inside_the_model(exported, make_clip, tmp_path):
    cfg = with_backbone(CFG, exported["keras"], full_frames=True)
    assert cfg.frame_size == 32
    records, labels = separable_records(cfg, n=8)
    rng = np.random.default_rng(1)
    for record, label in zip(records, labels):
        record.frames = rng.integers(0, 128, record.frames.shape, dtype=np.uint8) + np.uint8(120 * label)
    data = arrays_of(records, labels)
    config = replace(FAST, epochs=1, finetune_backbone=True)
    model = train(data, data, CLASSES, config, progress=lambda _: None, backbone=cfg.backbone).model
    assert "backbone" not in input_names(model)  # the model embeds its frames itself

    original = keras.models.load_model(exported["keras"]).get_weights()
    tuned = model.get_layer("backbone").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(original, tuned))

    model.save(tmp_path / "model.keras")
    predictor = Predictor(keras.models.load_model(tmp_path / "model.keras", compile=False),
                          ModelCard(tuple(CLASSES), cfg, "classification"))
    assert predictor.extraction.backbone == ""  # serving needs no backbone file
    clip = make_clip("new.mp4", seconds=0.6)
    expected = model(stack_inputs([extract_features(clip, predictor.extraction)], input_names(model)), training=False)
    np.testing.assert_allclose(list(predictor.predict_clip(clip)["probabilities"].values()),
                               np.asarray(expected["emotion"])[0], rtol=1e-4, atol=1e-5)

    with pytest.raises(BackboneError, match="fine-tuning needs a .keras backbone"):
        train(data, data, CLASSES, config, progress=lambda _: None, backbone=str(exported["saved_model"]))


def test_cross_validation_on_backbone_embeddings(exported, tmp_path):
    """Every speaker tested once by a model trained on the other speakers' cached embeddings."""
    cfg = with_backbone(CFG, exported["keras"])
    records, labels = separable_records(cfg, n=36)
    speakers = np.array([f"s{i % 6}" for i in range(len(labels))])
    data = arrays_of(records, labels).replace(speakers=speakers)
    frame = pd.DataFrame({"speaker": speakers, "emotion": [CLASSES[i] for i in labels], "record": None})
    cv = cross_validate(frame, FAST, k=3, classes=CLASSES, progress=lambda _: None, arrays=data)
    assert len(cv.predictions) == 36 and sorted(cv.predictions["speaker"].unique()) == sorted(set(speakers))
    assert cv.pooled()["uar"] >= 0.9
