"""Prediction on one clip with a trained model and the preprocessing it was trained with.

The same ``extract_features`` runs here as in training, so the CLI and the BentoML service see
exactly what the model saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from affectflow.arrays import Arrays, modalities_of
from affectflow.backbone import bundled, require_backbone
from affectflow.calibration import scaled
from affectflow.config import PreprocessConfig, with_backbone
from affectflow.errors import UserError
from affectflow.features import ClipFeatures, blank_features, extract_features, stack_inputs, warm_up
from affectflow.labels import AFFECT_DIMENSIONS
from affectflow.model import AFFECT_OUTPUT, EMOTION_OUTPUT, input_names
from affectflow.speakers import Statistics, population_of
from affectflow.voices import MIN_CLIPS, VoiceBook, calibrated, check_voice

MODEL_FILENAME = "model.keras"
# Why a modality of an upload cannot be used: what an answer without it says.
MISSING = {"audio": "no speech (the audio track is missing or silent)", "video": "no video frames",
           "face": "no face in the sampled frames"}


class UnusableClipError(UserError, ValueError):
    """A readable clip in which none of the modalities the model uses is present: no honest answer."""


def found_modalities(record: ClipFeatures) -> dict[str, bool]:
    """Which modalities an upload actually has: audio that is not silence, video frames, a face."""
    return {"video": bool(record.video_mask), "audio": bool(record.audio_mask), "face": record.face_frames > 0}


@dataclass(frozen=True)
class ModelCard:
    """What must travel with a model: its classes, its preprocessing, where it came from."""

    classes: tuple[str, ...]
    preprocess: PreprocessConfig
    task: str
    model_version: str = "unregistered"
    dataset_version: str = "unknown"
    speaker_norm: bool = False    # trained on speaker-aligned audio: evaluate a batch aligned the same way
    dataset: str = "unknown"      # whose model: names its MLflow model, BentoML model and Bento
    temperature: float = 1.0      # calibration (``affectflow.calibration``): probabilities are softmax(log p / T)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "preprocess": self.preprocess.to_dict(), "task": self.task,
                "model_version": self.model_version, "dataset_version": self.dataset_version,
                "speaker_norm": self.speaker_norm, "dataset": self.dataset, "temperature": self.temperature}

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        return cls(classes=tuple(data["classes"]), preprocess=PreprocessConfig.from_dict(data["preprocess"]),
                   task=data["task"], model_version=str(data.get("model_version", "unregistered")),
                   dataset_version=str(data.get("dataset_version", "unknown")),
                   speaker_norm=bool(data.get("speaker_norm", False)), dataset=str(data.get("dataset", "unknown")),
                   temperature=float(data.get("temperature", 1.0)))


def extraction_config(inputs: Sequence[str], cfg: PreprocessConfig) -> PreprocessConfig:
    """How clips are preprocessed for a model taking ``inputs``: as in training, but without the backbone
    embedding when the model does not take it (a fine-tuned backbone lives inside the model). A model that
    takes it needs the backbone file it was trained with: a ``backbone.BackboneError`` says which, now
    rather than per clip."""
    if "backbone" not in inputs:
        return with_backbone(cfg, None)
    require_backbone(cfg.backbone, cfg.backbone_hash)
    return cfg


class ClipReader:
    """The clip side of a model, without the model: its preprocessing, the modalities it uses, and how its raw
    outputs become answers. The service's request workers hold one; the model itself lives in one process.

    ``population`` (the model's audio population statistics, ``speakers.population_of``) and ``voices`` make
    speaker calibration possible: ``model_inputs(records, speaker)`` aligns a named voice's clips as training
    aligned each speaker, with the label-free statistics of that voice's clips so far (``affectflow.voices``)."""

    def __init__(self, card: ModelCard, inputs: Sequence[str], population: Statistics | None = None,
                 voices: VoiceBook | None = None):
        self.card = card
        self.inputs = tuple(inputs)                             # the arrays the model takes, in order
        self.extraction = extraction_config(self.inputs, card.preprocess)
        self.modalities = tuple(modalities_of(self.inputs))     # what it uses
        self.population, self.voices = population, voices

    def model_inputs(self, records: Sequence[ClipFeatures],
                     speaker: str | None = None) -> tuple[dict[str, np.ndarray], dict | None]:
        """The model's inputs for ``records`` and, for a named ``speaker``, what calibration did: the clips
        are added to that voice's running statistics first, then aligned with them (shrunk towards the
        population, ``voices.calibrated``) once the voice has ``voices.MIN_CLIPS`` clips (a model trained
        without speaker normalisation takes clips as they are, and the note says so)."""
        inputs = stack_inputs(records, self.inputs)
        if speaker is None:
            return inputs, None
        check_voice(speaker)
        if not (self.card.speaker_norm and self.population and self.voices):
            return inputs, {"speaker": speaker, "clips": 0, "aligned": False,
                            "note": "this model was trained without speaker normalisation: nothing to calibrate"}
        clips = Arrays(inputs, np.zeros(len(records), int), np.zeros((len(records), 2), np.float32),
                       np.array([speaker] * len(records)))
        own, heard = self.voices.hear(speaker, clips)
        aligned = heard >= MIN_CLIPS
        note = {"speaker": speaker, "clips": heard, "aligned": aligned}
        return (calibrated(clips, own, heard, self.population).inputs if aligned else inputs), note

    def usable_features(self, path: str | Path) -> ClipFeatures:
        """Decode and extract the clip's features. Raises ``MediaError`` for a file that does not decode and
        ``UnusableClipError`` for one without any modality the model uses (an audio model and a silent clip)."""
        record = extract_features(path, self.extraction)
        found = found_modalities(record)
        if not any(found[m] for m in self.modalities):
            raise UnusableClipError(f"{path}: nothing this model can use: "
                                    + "; ".join(MISSING[m] for m in self.modalities))
        return record

    def answers(self, outputs: Mapping[str, np.ndarray], records: Sequence[ClipFeatures]) -> list[dict]:
        """JSON-ready answers from the model's outputs for ``records`` (one dict per clip): the emotion, its
        calibrated ``confidence`` and ``probabilities``, arousal/valence, the modalities used and found."""
        results = []
        for i, record in enumerate(records):
            result: dict = {"model_version": self.card.model_version,
                            "modalities": {"used": list(self.modalities), "found": found_modalities(record)}}
            if EMOTION_OUTPUT in outputs:
                probs = scaled(outputs[EMOTION_OUTPUT][i], self.card.temperature)
                result["emotion"] = self.card.classes[int(np.argmax(probs))]
                result["confidence"] = round(float(probs.max()), 6)
                result["probabilities"] = {c: round(float(p), 6) for c, p in zip(self.card.classes, probs)}
            if AFFECT_OUTPUT in outputs:
                for dim, value in zip(AFFECT_DIMENSIONS, outputs[AFFECT_OUTPUT][i]):
                    result[dim] = round(float(value), 6)
            results.append(result)
        return results

    def warm_up(self) -> None:
        """Compile librosa's code and load the face backend, so that the first request is not seconds slow."""
        warm_up(self.extraction)


class Predictor(ClipReader):
    """A loaded model plus its card; turns clips into JSON-ready predictions in this process."""

    def __init__(self, model: keras.Model, card: ModelCard, voices: VoiceBook | None = None):
        super().__init__(card, input_names(model), population_of(model), voices)
        self.model = model

    @classmethod
    def from_dir(cls, folder: str | Path, card: dict | ModelCard) -> Predictor:
        """Load ``folder/model.keras`` (inference only: no optimizer state), with the backbone packaged
        beside it when there is one (``packaging.save_to_bentoml`` copies it there)."""
        model = keras.models.load_model(Path(folder) / MODEL_FILENAME, compile=False)
        return cls(model, with_bundled_backbone(folder, card))

    def outputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's raw outputs (``emotion`` probabilities, ``affect``) for stacked inputs."""
        return {name: np.asarray(value) for name, value in self.model(dict(inputs), training=False).items()}

    def predict_features(self, records: list[ClipFeatures], speaker: str | None = None) -> list[dict]:
        """Predictions for already extracted clips (one dict per clip); ``speaker``: calibrated to that voice."""
        inputs, calibration = self.model_inputs(records, speaker)
        answers = self.answers(self.outputs(inputs), records)
        return [{**answer, "calibration": calibration} for answer in answers] if calibration else answers

    def warm_up(self) -> None:
        """``ClipReader.warm_up``, and one model call."""
        super().warm_up()
        self.predict_features([blank_features(self.extraction)])

    def predict_clip(self, path: str | Path, speaker: str | None = None) -> dict:
        """``usable_features`` then ``predict_features``: one clip's prediction."""
        return self.predict_features([self.usable_features(path)], speaker)[0]


def with_bundled_backbone(folder: str | Path, card: dict | ModelCard) -> ModelCard:
    """The card of a model stored in ``folder``, its backbone path pointing at the copy packaged beside it
    (when there is one)."""
    card = card if isinstance(card, ModelCard) else ModelCard.from_dict(card)
    copy = bundled(folder)
    if copy is None:
        return card
    return dataclasses.replace(card, preprocess=dataclasses.replace(card.preprocess, backbone=str(copy)))
