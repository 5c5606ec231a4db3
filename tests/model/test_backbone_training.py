"""Training on pre-trained backbones: a model on cached embeddings in cross-validation, and a backbone
fine-tuned inside the model (tiny backbones the tests export themselves)."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pandas as pd
import pytest
from support import BACKBONE_CFG as CFG
from support import arrays_of, separable_records

from affectflow.backbone import BackboneError
from affectflow.config import TrainConfig, with_backbone
from affectflow.crossval import cross_validate
from affectflow.features import (
    extract_features,
    stack_inputs,
)
from affectflow.model import input_names
from affectflow.predict import ModelCard, Predictor
from affectflow.training import train

CLASSES = ["anger", "happiness"]

FAST = replace(TrainConfig(), task="classification", epochs=12, batch_size=8, hidden_units=16, learning_rate=1e-2,
               min_epochs=0, modality_dropout=0.0, speaker_norm=False)


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
