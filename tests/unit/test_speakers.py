"""Speaker normalisation: each voice aligned to the population, silence untouched, statistics kept by the model."""


import numpy as np
import pytest
from support import voices

from affectflow.model import sound_frames
from affectflow.speakers import align_speakers, audio_statistics


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


