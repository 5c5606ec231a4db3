"""Speaker normalisation of audio features: each voice's feature statistics aligned to one population.

Much of what separates two clips' MFCC and log-mel is who speaks (vocal tract, pitch range,
microphone), not how they feel. Standardising each speaker's features with that speaker's own mean and
standard deviation removes it; it is the usual step in speaker-independent emotion recognition. It
uses the speaker's audio only, never their labels, so it is as legitimate for a test speaker as for a
training one: a deployment would compute it from a new speaker's first unlabelled clips.

Statistics are taken over the frames with sound (``model.sound_frames``) of clips with audio, per
feature. Each speaker is mapped onto the *training population's* statistics rather than onto zero mean
and unit variance: ``x' = (x - mean_s) / std_s * std_pop + mean_pop``. The model's own normalisers are
adapted on the aligned training data, so they hold exactly the population statistics
(``population_of`` reads them back). A clip with no speaker context (one file sent to the service)
goes in unaligned and is treated as a voice of the average speaker: a graceful fallback, not a
different input space.
"""

from __future__ import annotations

import keras
import numpy as np

from affectflow.arrays import Arrays
from affectflow.model import AUDIO_INPUTS, sound_frames

Statistics = dict[str, tuple[np.ndarray, np.ndarray]]  # input name -> (mean, std) per feature


def _audio_names(arrays: Arrays) -> list[str]:
    return [name for name in AUDIO_INPUTS if name in arrays.inputs]


def audio_statistics(arrays: Arrays, which: np.ndarray | None = None) -> Statistics:
    """Mean and standard deviation per feature over the sound frames of the clips selected by ``which``."""
    frames = sound_frames(arrays.inputs)
    if which is not None:
        frames = frames & which[:, None]
    if not frames.any():
        raise ValueError("no audio frames with sound to take statistics from")
    result = {}
    for name in _audio_names(arrays):
        values = arrays.inputs[name][frames].astype(np.float64)
        result[name] = (values.mean(axis=0), np.maximum(values.std(axis=0), 1e-6))
    return result


def align_speakers(arrays: Arrays, population: Statistics) -> Arrays:
    """A copy whose speakers' sound frames have ``population``'s statistics; silence and clips without
    audio are left as they are. Needs ``arrays.speakers``."""
    if arrays.speakers is None:
        raise ValueError("speaker normalisation needs the speaker of every clip (Arrays.speakers)")
    inputs = {name: array.copy() if name in population else array for name, array in arrays.inputs.items()}
    frames = sound_frames(arrays.inputs)
    for speaker in np.unique(arrays.speakers):
        own = arrays.speakers == speaker
        if not (frames & own[:, None]).any():
            continue
        mask = frames & own[:, None]
        for name, (mean, std) in audio_statistics(arrays, own).items():
            if name not in population:
                continue
            target_mean, target_std = population[name]
            values = inputs[name][mask]
            inputs[name][mask] = ((values - mean) / std * target_std + target_mean).astype(values.dtype)
    return arrays.replace(inputs=inputs)


def population_of(model: keras.Model) -> Statistics:
    """The population statistics a model was trained with, read from its audio normalisers."""
    result = {}
    for name in AUDIO_INPUTS:
        try:
            layer = model.get_layer(f"{name}_norm")
        except ValueError:
            continue
        mean = np.asarray(layer.mean).reshape(-1)
        result[name] = (mean, np.sqrt(np.asarray(layer.variance).reshape(-1)))
    return result


def aligned_for(model: keras.Model, arrays: Arrays) -> Arrays:
    """``arrays`` with speakers aligned to ``model``'s population (unchanged for a model without audio)."""
    population = population_of(model)
    return align_speakers(arrays, population) if population else arrays

