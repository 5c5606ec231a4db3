"""Modality ablations on a toy model whose class lives in the audio only."""

from dataclasses import replace

import numpy as np
import pytest

from affectflow.ablation import ablate, ablation_markdown, ablation_views, model_modalities
from affectflow.config import TrainConfig
from affectflow.training import Arrays, train

CLASSES = ("anger", "happiness", "sadness")


def arrays(n: int, seed: int, audio_present: float = 1.0) -> Arrays:
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


def test_audio_carries_the_signal_and_video_does_not(model):
    assert model_modalities(model) == ["video", "audio"]
    table = ablate(model, arrays(30, 2), CLASSES).set_index("view")
    assert list(table.index) == ["all", "video only", "audio only"]
    assert table.loc["audio only", "uar"] > 0.8
    assert table.loc["video only", "uar"] == pytest.approx(1 / 3)  # one answer for every clip: chance
    assert table.loc["all", "uar"] > 0.8


def test_a_view_is_scored_only_on_clips_that_carry_its_modalities(model):
    test = arrays(30, 3, audio_present=0.5)
    table = ablate(model, test, CLASSES).set_index("view")
    with_audio = int(test.inputs["audio_mask"].sum())
    assert 0 < with_audio < 30
    assert table.loc["audio only", "n"] == with_audio
    assert table.loc["video only", "n"] == table.loc["all", "n"] == 30
    text = ablation_markdown(table.reset_index())
    assert "| audio only | audio |" in text and "uar" in text


def test_masking_hides_face_frames_too():
    rng = np.random.default_rng(0)
    base = Arrays({"face": rng.normal(size=(2, 4, 6)).astype("float32"), "face_mask": np.ones((2, 4), "float32")},
                  np.array([0, 1]), np.zeros((2, 2), "float32"))
    hidden = base.masked("face")
    assert hidden.inputs["face_mask"].shape == (2, 4) and not hidden.inputs["face_mask"].any()
    assert base.inputs["face_mask"].all()  # the original is untouched
