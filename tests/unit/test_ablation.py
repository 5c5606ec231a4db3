"""Modality ablations on a toy model whose class lives in the audio only."""

from dataclasses import replace

import numpy as np
import pytest
from support import audio_signal_arrays as arrays

from affectflow.ablation import ablation_views
from affectflow.arrays import Arrays
from affectflow.config import TrainConfig
from affectflow.training import train

CLASSES = ("anger", "happiness", "sadness")


@pytest.fixture(scope="module")
def model():
    config = replace(TrainConfig(), epochs=30, hidden_units=16, batch_size=8, audio_encoder="stats", dropout=0.1,
                     speaker_norm=False, modality_dropout=0.5)  # often trained alone, each modality is scored fairly
    return train(arrays(60, 0), arrays(12, 1), CLASSES, config, progress=lambda _: None).model


def test_views_cover_each_modality_alone_and_left_out():
    assert ablation_views(["audio"]) == {"all": ("audio",)}
    assert ablation_views(["video", "audio"]) == {"all": ("video", "audio"), "video only": ("video",),
                                                  "audio only": ("audio",)}
    three = ablation_views(["video", "audio", "face"])
    assert three["without face"] == ("video", "audio") and len(three) == 7


def test_masking_hides_face_frames_too():
    rng = np.random.default_rng(0)
    base = Arrays({"face": rng.normal(size=(2, 4, 6)).astype("float32"), "face_mask": np.ones((2, 4), "float32")},
                  np.array([0, 1]), np.zeros((2, 2), "float32"))
    hidden = base.masked("face")
    assert hidden.inputs["face_mask"].shape == (2, 4) and not hidden.inputs["face_mask"].any()
    assert base.inputs["face_mask"].all()  # the original is untouched
