"""Modality ablations of a trained toy model whose class lives in the audio only."""

from dataclasses import replace

import pytest
from support import audio_signal_arrays as arrays

from affectflow.ablation import ablate, ablation_markdown
from affectflow.arrays import model_modalities
from affectflow.config import TrainConfig
from affectflow.training import train

CLASSES = ("anger", "happiness", "sadness")


@pytest.fixture(scope="module")
def model():
    config = replace(TrainConfig(), epochs=30, hidden_units=16, batch_size=8, audio_encoder="stats", dropout=0.1,
                     speaker_norm=False, modality_dropout=0.5)  # often trained alone, each modality is scored fairly
    return train(arrays(60, 0), arrays(12, 1), CLASSES, config, progress=lambda _: None).model


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
