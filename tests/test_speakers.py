"""Speaker normalisation: each voice aligned to the population, silence untouched, statistics kept by the model."""

from dataclasses import replace

import numpy as np
import pytest

from affectflow.config import TrainConfig
from affectflow.model import sound_frames
from affectflow.speakers import align_speakers, aligned_for, audio_statistics, population_of
from affectflow.training import Arrays, prepare, train

CLASSES = ("anger", "sadness")


def voices(seed: int = 0, per_speaker: int = 8) -> Arrays:
    """Three speakers with their own MFCC offset and scale; the last 3 frames of each clip are padding."""
    rng = np.random.default_rng(seed)
    mfcc, speakers = [], []
    for s, (offset, scale) in enumerate([(-3.0, 0.5), (0.0, 1.0), (4.0, 2.0)]):
        for _ in range(per_speaker):
            clip = rng.normal(offset, scale, size=(10, 40))
            clip[7:] = 0.0
            clip[7:, 0] = -500.0  # a flat spectrum: only the 0th coefficient is non-zero
            mfcc.append(clip)
            speakers.append(f"s{s}")
    n = len(mfcc)
    inputs = {"mfcc": np.asarray(mfcc, "float32"), "audio_mask": np.ones((n, 1), "float32")}
    labels = np.arange(n) % 2
    return Arrays(inputs, labels, np.zeros((n, 2), "float32"), np.array(speakers))


def test_padding_and_silence_are_not_sound():
    arrays = voices()
    frames = sound_frames(arrays.inputs)
    assert frames[:, :7].all() and not frames[:, 7:].any()
    no_audio = arrays.replace(inputs={**arrays.inputs, "audio_mask": np.zeros((len(arrays), 1), "float32")})
    assert not sound_frames(no_audio.inputs).any()


def test_each_speaker_gets_the_population_statistics_and_silence_is_untouched():
    arrays = voices()
    population = audio_statistics(arrays)
    aligned = align_speakers(arrays, population)
    for speaker in ("s0", "s1", "s2"):
        mean, std = audio_statistics(aligned, aligned.speakers == speaker)["mfcc"]
        np.testing.assert_allclose(mean, population["mfcc"][0], atol=1e-4)
        np.testing.assert_allclose(std, population["mfcc"][1], rtol=1e-4)
    np.testing.assert_array_equal(aligned.inputs["mfcc"][:, 7:], arrays.inputs["mfcc"][:, 7:])
    np.testing.assert_array_equal(aligned.inputs["audio_mask"], arrays.inputs["audio_mask"])
    assert not np.shares_memory(aligned.inputs["mfcc"], arrays.inputs["mfcc"])  # the input is not modified


def test_alignment_needs_speakers():
    with pytest.raises(ValueError, match="speaker"):
        align_speakers(voices().replace(speakers=None), audio_statistics(voices()))


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
