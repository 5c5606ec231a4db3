"""Model inputs and targets of a set of clips, stacked from the feature cache.

``Arrays`` is what training, evaluation, speaker normalisation and ablations pass around: inputs by
model input name (frames stay uint8 until the model), class indices, ``[arousal, valence]`` targets and
the speaker of each clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.config import FUNCTIONAL_SETS
from affectflow.features import (
    AUDIO_EXTRAS,
    MODEL_INPUTS,
    OPTIONAL_ARRAYS,
    ClipFeatures,
    load_features,
    stack_inputs,
)
from affectflow.labels import AFFECT_DIMENSIONS
from affectflow.model import AFFECT_OUTPUT, AUDIO_INPUTS, EMOTION_OUTPUT, input_names

# Everything a record offers: frames, face (features, crops, mask), MFCC with deltas and log-mel, masks.
TRAINING_INPUTS = (*MODEL_INPUTS, *AUDIO_EXTRAS)


# Each modality's presence input and the inputs that carry it.
MODALITIES: dict[str, tuple[str, ...]] = {
    "video": ("video_mask", "frames", "backbone"),
    "audio": ("audio_mask", "mfcc", *AUDIO_EXTRAS, *FUNCTIONAL_SETS),
    "face": ("face_mask", "face", "face_crops"),
}


def modalities_of(inputs: Sequence[str]) -> list[str]:
    """The modalities a model taking ``inputs`` has an encoder for (their mask is one of its inputs)."""
    return [m for m, (mask, *_) in MODALITIES.items() if mask in set(inputs)]


def model_modalities(model) -> list[str]:
    """``modalities_of`` the inputs of a Keras model."""
    return modalities_of(input_names(model))


@dataclass
class Arrays:
    """Model inputs and targets for a set of clips (frames stay uint8 until the model)."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray          # class index per clip
    affect: np.ndarray          # (n, 2) [arousal, valence]
    speakers: np.ndarray | None = None  # speaker per clip, for speaker normalisation and group metrics

    def __len__(self) -> int:
        return len(self.labels)

    def targets(self, output_names: Sequence[str]) -> dict[str, np.ndarray]:
        available = {EMOTION_OUTPUT: self.labels, AFFECT_OUTPUT: self.affect}
        return {name: available[name] for name in output_names}

    def replace(self, **changes) -> Arrays:
        return dataclasses.replace(self, **changes)

    def subset(self, index: np.ndarray) -> Arrays:
        """The clips at positions ``index`` (or a boolean mask)."""
        return Arrays({k: v[index] for k, v in self.inputs.items()}, self.labels[index], self.affect[index],
                      None if self.speakers is None else self.speakers[index])

    def modalities(self) -> list[str]:
        """The modalities these arrays have inputs for, whether or not any clip carries them."""
        return [name for name, (mask, *_) in MODALITIES.items() if mask in self.inputs]

    def present(self) -> list[str]:
        """The modalities that at least one clip carries (mask > 0)."""
        return [m for m in self.modalities() if self.inputs[MODALITIES[m][0]].any()]

    def only(self, modalities: Sequence[str]) -> Arrays:
        """A copy without the inputs of other modalities: a model built on it has no encoder for them."""
        kept = {name for m in modalities for name in MODALITIES[m]}
        dropped = {name for m in self.modalities() if m not in modalities for name in MODALITIES[m]}
        return self.replace(inputs={k: v for k, v in self.inputs.items() if k in kept or k not in dropped})

    def masked(self, modality: str) -> Arrays:
        """A copy with one modality hidden (``video``, ``audio`` or ``face``): for ablations."""
        mask = MODALITIES[modality][0]
        return self.replace(inputs={**self.inputs, mask: np.zeros_like(self.inputs[mask])})


def concatenate(parts: Sequence[Arrays]) -> Arrays:
    """The clips of several sets, in order (they must have the same inputs)."""
    speakers = None if any(p.speakers is None for p in parts) else np.concatenate([p.speakers for p in parts])
    return Arrays({k: np.concatenate([p.inputs[k] for p in parts]) for k in parts[0].inputs},
                  np.concatenate([p.labels for p in parts]), np.concatenate([p.affect for p in parts]), speakers)


def offered_inputs(record: ClipFeatures) -> list[str]:
    """The inputs a record offers a model: only the features its preprocessing extracted (no MFCC frames
    for ``audio_features="egemaps"``, no backbone or eGeMAPS unless asked for): an empty input must not
    reach the model."""
    names = [name for name in TRAINING_INPUTS if name not in AUDIO_INPUTS or record.mfcc.size]
    return names + [name for name in OPTIONAL_ARRAYS if getattr(record, name).size]


def load_arrays(frame: pd.DataFrame, classes: Sequence[str]) -> Arrays:
    """Stack the cached records named in ``frame.record`` with the frame's labels and speakers."""
    index = {c: i for i, c in enumerate(classes)}
    records = [load_features(Path(p)) for p in frame["record"]]
    affect = frame[list(AFFECT_DIMENSIONS)].astype("float32").to_numpy()
    names = offered_inputs(records[0]) if records else TRAINING_INPUTS
    return Arrays(stack_inputs(records, names), frame["emotion"].map(index).to_numpy(np.int64), affect,
                  frame["speaker"].astype(str).to_numpy())
