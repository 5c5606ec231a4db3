"""A model trained on speaker-aligned audio keeps the population statistics it was aligned to."""

from dataclasses import replace

import numpy as np
from support import voices

from affectflow.config import TrainConfig
from affectflow.speakers import aligned_for, audio_statistics, population_of
from affectflow.training import prepare, train

CLASSES = ("anger", "sadness")


def test_the_model_keeps_the_population_it_was_trained_on():
    config = replace(TrainConfig(), epochs=1, hidden_units=8, batch_size=8, audio_encoder="stats")
    arrays = voices()
    model = train(arrays.subset(arrays.speakers != "s2"), arrays.subset(arrays.speakers == "s2"), CLASSES, config,
                  progress=lambda _: None).model
    population = population_of(model)
    expected = audio_statistics(prepare(arrays.subset(arrays.speakers != "s2"), [], config)[0])
    np.testing.assert_allclose(population["mfcc"][0], expected["mfcc"][0], atol=1e-3)
    np.testing.assert_allclose(population["mfcc"][1], expected["mfcc"][1], rtol=1e-3)
    # a new speaker is mapped onto that population
    new = voices(seed=5).subset(voices(seed=5).speakers == "s2").replace(speakers=np.array(["new"] * 8))
    mean, _ = audio_statistics(aligned_for(model, new))["mfcc"]
    np.testing.assert_allclose(mean, population["mfcc"][0], atol=1e-3)
