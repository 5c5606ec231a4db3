"""User-supplied pre-trained backbones: both formats, the checks, embeddings computed once and cached.

The backbones are tiny models the tests export themselves (nothing is downloaded).
"""

from __future__ import annotations

import shutil
import zipfile

import keras
import numpy as np
import pytest
from keras import layers
from support import BACKBONE_CFG as CFG

from affectflow.backbone import BackboneError, load_backbone
from affectflow.cache import preprocess_clips
from affectflow.config import PreprocessConfig, with_backbone
from affectflow.features import (
    blank_features,
    load_features,
    save_features,
)
from affectflow.media import read_sampled


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
    # the hash before backbones (and eGeMAPS) existed: caches stay valid
    assert PreprocessConfig(audio_features="mfcc").hash() == "cbaa00953a7f87dc"
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
    results = preprocess_clips([clip, audio_only], tmp_path / "cache", cfg)
    assert [(r.ok, r.cached) for r in results] == [(True, False), (True, False)]
    record = load_features(results[0].record)
    # Embedded from the working frames (not the 16-pixel model frames), as the backbone sees them directly.
    video = read_sampled(clip, cfg.num_frames, cfg.face_width)
    np.testing.assert_allclose(record.backbone, load_backbone(cfg.backbone).embed(video.frames), rtol=1e-5, atol=1e-6)
    assert record.backbone.shape == (8,) and record.frames.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(load_features(results[1].record).backbone, np.zeros(8, np.float32))

    (again,) = preprocess_clips([clip], tmp_path / "cache", cfg)
    assert again.cached and again.record == results[0].record
    np.testing.assert_array_equal(load_features(again.record).backbone, record.backbone)
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


