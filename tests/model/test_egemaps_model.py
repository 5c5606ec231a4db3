"""An eGeMAPS-only model trained on real speech: speaker alignment covers the functionals, the model keeps the
population they were aligned to, and a new speaker is mapped onto it."""

from dataclasses import replace

import numpy as np
import pytest
from support import shared_data

from affectflow.arrays import Arrays, offered_inputs
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import extract_features, stack_inputs
from affectflow.model import input_names
from affectflow.speakers import audio_statistics, population_of
from affectflow.training import prepare, ready_for, train

pytestmark = pytest.mark.slow

CFG = PreprocessConfig(audio_features="egemaps", face_backend="none")
CODES = {"W": "anger", "N": "neutral", "T": "sadness"}  # EmoDB's emotion letter, 6th character of the name


def _speech(speakers: tuple[str, ...], per_speaker: int = 12) -> Arrays:
    """Up to ``per_speaker`` clips of anger, neutral and sadness per speaker, eGeMAPS extracted."""
    def chosen(speaker: str) -> list:
        return [c for c in sorted(shared_data("emodb").glob(f"{speaker}*.wav")) if c.name[5] in CODES][:per_speaker]
    clips = [clip for speaker in speakers for clip in chosen(speaker)]
    records = [extract_features(clip, CFG) for clip in clips]
    labels = np.array([sorted(CODES).index(clip.name[5]) for clip in clips])
    return Arrays(stack_inputs(records, offered_inputs(records[0])), labels, np.zeros((len(clips), 2), "float32"),
                  np.array([clip.name[:2] for clip in clips]))


def test_an_egemaps_model_trains_on_speaker_aligned_functionals():
    config = replace(TrainConfig(), epochs=12, hidden_units=16, batch_size=8, min_epochs=0, task="classification")
    train_set, val_set, test_set = _speech(("03", "08", "09")), _speech(("11",)), _speech(("10",))
    result = train(train_set, val_set, [CODES[c] for c in sorted(CODES)], config, progress=lambda _: None)

    assert "egemaps" in input_names(result.model) and "mfcc" not in input_names(result.model)
    assert result.history["loss"][-1] < result.history["loss"][0]
    expected = audio_statistics(prepare(train_set, [], config)[0])["egemaps"]
    population = population_of(result.model)["egemaps"]
    np.testing.assert_allclose(population[0], expected[0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(population[1], expected[1], rtol=1e-3, atol=1e-3)
    aligned = ready_for(result.model, test_set, config)  # the unseen speaker, mapped onto that population
    np.testing.assert_allclose(audio_statistics(aligned)["egemaps"][0], population[0], rtol=1e-3, atol=1e-3)
