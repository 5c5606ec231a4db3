"""Speaker normalisation of audio features: each voice's feature statistics aligned to one population.

Much of what separates two clips' MFCC and log-mel is who speaks (vocal tract, pitch range,
microphone), not how they feel. Standardising each speaker's features with that speaker's own mean and
standard deviation removes it; it is the usual step in speaker-independent emotion recognition. It
uses the speaker's audio only, never their labels, so it is as legitimate for a test speaker as for a
training one: a deployment would compute it from a new speaker's first unlabelled clips.

Statistics are taken per feature over the frames with sound (``model.sound_frames``) of clips with
audio for frame features (MFCC, deltas, log-mel), and over the clips with audio for the clip-level eGeMAPS
functionals. Each speaker is mapped onto the *training population's* statistics rather than onto zero mean
and unit variance: ``x' = (x - mean_s) / std_s * std_pop + mean_pop``. The model's own normalisers are
adapted on the aligned training data, so they hold exactly the population statistics
(``population_of`` reads them back). A clip with no speaker context (one file sent to the service)
goes in unaligned and is treated as a voice of the average speaker: a graceful fallback, not a
different input space.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from affectflow.arrays import Arrays
from affectflow.config import FUNCTIONAL_SETS
from affectflow.model import AUDIO_INPUTS, sound_frames

Statistics = dict[str, tuple[np.ndarray, np.ndarray]]  # input name -> (mean, std) per feature
# The audio inputs aligned: frame features, then the clip-level functionals.
ALIGNED_INPUTS = (*AUDIO_INPUTS, *FUNCTIONAL_SETS)


def aligned_inputs(arrays: Arrays) -> list[str]:
    """The audio inputs of ``arrays`` that speaker normalisation aligns."""
    return [name for name in ALIGNED_INPUTS if name in arrays.inputs]


def sound_rows(arrays: Arrays, name: str, which: np.ndarray | None = None) -> np.ndarray:
    """Where input ``name`` describes sound, among the clips ``which`` selects (all by default): the frames
    with sound, (n, A), for frame features; the clips with audio, (n,), for clip-level functionals."""
    clips = np.ones(len(arrays), bool) if which is None else which
    if name in AUDIO_INPUTS:
        return sound_frames(arrays.inputs) & clips[:, None]
    return (arrays.inputs["audio_mask"][:, 0] > 0) & clips


def _moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = values.astype(np.float64)
    return values.mean(axis=0), np.maximum(values.std(axis=0), 1e-6)


def audio_statistics(arrays: Arrays, which: np.ndarray | None = None) -> Statistics:
    """Mean and standard deviation per feature of each audio input, over its sound (``sound_rows``) in the
    clips selected by ``which``."""
    result = {}
    for name in aligned_inputs(arrays):
        where = sound_rows(arrays, name, which)
        if not where.any():
            raise ValueError("no audio with sound to take statistics from")
        result[name] = _moments(arrays.inputs[name][where])
    return result


def _mapped(values: np.ndarray, own: tuple[np.ndarray, np.ndarray],
            target: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(x - mean_own) / std_own * std_target + mean_target``, in ``values``' dtype."""
    (mean, std), (target_mean, target_std) = own, target
    return ((values - mean) / std * target_std + target_mean).astype(values.dtype)


def align_speakers(arrays: Arrays, population: Statistics) -> Arrays:
    """A copy whose speakers' sound has ``population``'s statistics; silence and clips without audio are
    left as they are. Needs ``arrays.speakers``."""
    if arrays.speakers is None:
        raise ValueError("speaker normalisation needs the speaker of every clip (Arrays.speakers)")
    names = [name for name in aligned_inputs(arrays) if name in population]
    inputs = {name: array.copy() if name in names else array for name, array in arrays.inputs.items()}
    for speaker in np.unique(arrays.speakers):
        for name in names:
            where = sound_rows(arrays, name, arrays.speakers == speaker)
            if where.any():
                values = arrays.inputs[name][where]
                inputs[name][where] = _mapped(values, _moments(values), population[name])
    return arrays.replace(inputs=inputs)


def align_with(arrays: Arrays, own: Statistics, population: Statistics) -> Arrays:
    """A copy whose sound is mapped from ``own`` statistics (one voice's, known beforehand: the running ones
    of ``affectflow.voices``) onto ``population``'s."""
    names = [name for name in aligned_inputs(arrays) if name in population and name in own]
    inputs = {name: array.copy() if name in names else array for name, array in arrays.inputs.items()}
    for name in names:
        where = sound_rows(arrays, name)
        inputs[name][where] = _mapped(arrays.inputs[name][where], own[name], population[name])
    return arrays.replace(inputs=inputs)


# Clips of an average voice that a voice's own statistics are shrunk towards (``shrunk``). Chosen on the
# cross-validation calibration curves (docs/model.md, "Shrinking a new voice's statistics").
PRIOR_CLIPS = 3


def shrunk(own: Statistics, clips: int, population: Statistics, prior_clips: float = PRIOR_CLIPS) -> Statistics:
    """A voice's statistics from ``clips`` of its clips, shrunk towards ``population``'s as if ``prior_clips``
    clips of the average voice had been heard beside them: per feature, the moments of the mixture with weights
    ``n = clips`` and ``t = prior_clips``,

        mean = (n m_own + t m_pop) / (n + t)
        var  = (n (s_own^2 + (m_own - mean)^2) + t (s_pop^2 + (m_pop - mean)^2)) / (n + t).

    A few clips say as much about what was said as about the voice; the prior keeps their alignment from
    removing the emotion, and its weight fades as the voice's clips add up. Inputs ``population`` lacks are
    kept as they are."""
    result = dict(own)
    for name, (mean, std) in own.items():
        if name not in population:
            continue
        target_mean, target_std = population[name]
        n, t = float(clips), float(prior_clips)
        mixed = (n * mean + t * target_mean) / (n + t)
        variance = (n * (std ** 2 + (mean - mixed) ** 2) + t * (target_std ** 2 + (target_mean - mixed) ** 2)) / (n + t)
        result[name] = (mixed, np.maximum(np.sqrt(variance), 1e-6))
    return result


def population_of(model: keras.Model) -> Statistics:
    """The population statistics a model was trained with, read from its audio normalisers."""
    result = {}
    for name in ALIGNED_INPUTS:
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



POPULATION_FILENAME = "population.npz"


def save_population(model: keras.Model, folder: Path) -> Path | None:
    """``model``'s population statistics beside it (what a process without the model needs to align a voice);
    None for a model without audio normalisers."""
    population = population_of(model)
    if not population:
        return None
    path = folder / POPULATION_FILENAME
    np.savez(path, **{f"{name}:{part}": value for name, (mean, std) in population.items()
                      for part, value in (("mean", mean), ("std", std))})
    return path


def load_population(folder: Path) -> Statistics | None:
    """The statistics ``save_population`` wrote in ``folder``, or None where it wrote none."""
    path = folder / POPULATION_FILENAME
    if not path.exists():
        return None
    with np.load(path) as data:
        names = {key.rpartition(":")[0] for key in data.files}
        return {name: (data[f"{name}:mean"], data[f"{name}:std"]) for name in names}
