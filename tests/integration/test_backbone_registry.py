"""A model on backbone embeddings through the BentoML store and the MLflow registry: each keeps its own copy
of the backbone, so it serves after the original file is gone."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
from support import BACKBONE_CFG as CFG
from support import arrays_of, separable_records

from affectflow.backbone import BackboneError
from affectflow.config import TrainConfig, with_backbone
from affectflow.features import (
    stack_inputs,
)
from affectflow.model import input_names
from affectflow.packaging import save_to_bentoml, stored_model
from affectflow.predict import ModelCard, Predictor
from affectflow.registry import configure, load_predictor, log_training
from affectflow.reports import RunReport
from affectflow.training import train

CLASSES = ["anger", "happiness"]

FAST = replace(TrainConfig(), task="classification", epochs=12, batch_size=8, hidden_units=16, learning_rate=1e-2,
               min_epochs=0, modality_dropout=0.0, speaker_norm=False)


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
    assert result["emotion"] in CLASSES and result["modalities"]["used"] == ["video"]  # backbone embeddings
    tag = save_to_bentoml(model, predictor.card)
    configure(home)
    registered = log_training(trained, predictor.card, FAST, "toy", stack_inputs(records[:2], input_names(model)), {},
                              RunReport())

    (tmp_path / "backbone.keras").unlink()
    with pytest.raises(BackboneError, match=r"trained with backbone [0-9a-f]{16} at .*backbone.keras; file not found"):
        Predictor(model, ModelCard(tuple(CLASSES), cfg, "classification"))
    stored = stored_model(tag)  # the packaged model carries its own copy of the backbone
    packaged = Predictor.from_dir(stored.path, stored.metadata)
    assert packaged.predict_clip(clip)["probabilities"] == pytest.approx(result["probabilities"], abs=1e-5)
    logged = load_predictor(registered.uri)  # so does the MLflow run
    assert logged.predict_clip(clip)["probabilities"] == pytest.approx(result["probabilities"], abs=1e-5)
