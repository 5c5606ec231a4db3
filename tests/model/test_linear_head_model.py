"""A network with a linear ComParE head, trained on real speech (refit included) and served from its file: one
model, the functionals aligned like every audio input, the strength the validation speaker chose."""

from dataclasses import replace

import numpy as np
import pytest
from support import shared_data

from affectflow.arrays import Arrays, offered_inputs
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import extract_features, stack_inputs
from affectflow.linear_head import STRENGTHS
from affectflow.model import input_names
from affectflow.predict import MODEL_FILENAME, ModelCard, Predictor
from affectflow.speakers import population_of
from affectflow.training import train

pytestmark = pytest.mark.slow

CFG = PreprocessConfig(audio_features="mfcc+egemaps+compare", face_backend="none")
CODES = {"W": "anger", "N": "neutral", "T": "sadness"}  # EmoDB's emotion letter, 6th character of the name
CLASSES = [CODES[c] for c in sorted(CODES)]


def _clips(speaker: str, per_speaker: int = 10) -> list:
    return [c for c in sorted(shared_data("emodb").glob(f"{speaker}*.wav")) if c.name[5] in CODES][:per_speaker]


def _speech(speakers: tuple[str, ...]) -> Arrays:
    clips = [clip for speaker in speakers for clip in _clips(speaker)]
    records = [extract_features(clip, CFG) for clip in clips]
    labels = np.array([sorted(CODES).index(clip.name[5]) for clip in clips])
    return Arrays(stack_inputs(records, offered_inputs(records[0])), labels, np.zeros((len(clips), 2), "float32"),
                  np.array([clip.name[:2] for clip in clips]))


def test_a_network_with_a_compare_head_trains_refits_and_serves_as_one_model(tmp_path):
    config = replace(TrainConfig(), epochs=6, hidden_units=16, batch_size=8, min_epochs=0, task="classification",
                     linear_head="compare", refit=True)
    train_set, val_set = _speech(("03", "08", "09")), _speech(("11",))
    result = train(train_set, val_set, CLASSES, config, progress=lambda _: None)

    assert result.refit and result.linear_strength in STRENGTHS
    assert {"mfcc", "egemaps", "compare"} <= set(input_names(result.model))
    layers = {layer.name for layer in result.model.layers}
    assert "compare_linear" in layers and "compare_embedding" not in layers  # ComParE feeds the regression only
    assert population_of(result.model)["compare"][0].shape == (6373,)

    result.model.save(tmp_path / MODEL_FILENAME)
    card = ModelCard(tuple(CLASSES), CFG, "classification", speaker_norm=True)
    predictor = Predictor.from_dir(tmp_path, card)
    clip = _clips("10", 1)[0]
    answer = predictor.predict_clip(clip)
    assert answer["emotion"] in CLASSES
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    inputs = stack_inputs([extract_features(clip, CFG)], input_names(result.model))
    expected = np.asarray(result.model.predict(inputs, verbose=0)["emotion"])[0]
    np.testing.assert_allclose(list(answer["probabilities"].values()), expected, atol=1e-5)
