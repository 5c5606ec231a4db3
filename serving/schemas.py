"""The service's answers as typed models: what the OpenAPI schema (the Swagger page at ``/``) shows."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Modalities(BaseModel):
    used: list[str] = Field(description="the modalities the model has an encoder for (video, audio, face)")
    found: dict[str, bool] = Field(description="which of them the upload has: video frames, audio that is not "
                                               "silence, a face in the sampled frames")


class Prediction(BaseModel):
    """One clip's answer. ``emotion``, ``confidence`` and ``probabilities`` come from an emotion head,
    ``arousal`` and ``valence`` (in [-1, 1]) from an affect head; a model without that head leaves them null."""

    model_version: str = Field(description="the registered model that answered, e.g. affectflow-emodb/3")
    modalities: Modalities
    emotion: str | None = Field(None, description="the most probable class")
    confidence: float | None = Field(None, description="its calibrated probability (temperature scaling fitted "
                                                       "on validation speakers)")
    probabilities: dict[str, float] | None = Field(None, description="calibrated probability per class")
    arousal: float | None = None
    valence: float | None = None


class Rejection(BaseModel):
    """Why an upload got no answer: 400 when it does not decode, 422 when none of the model's modalities is
    usable (silence for an audio model, no face and no speech)."""

    error: str
    modalities: dict[str, list[str]] | None = None


class Metadata(BaseModel):
    """The served model: its card and where it comes from."""

    dataset: str
    dataset_version: str
    model_version: str
    model_tag: str = Field(description="the BentoML model inside the Bento")
    task: str
    classes: list[str]
    modalities: list[str]
    temperature: float = Field(description="calibration temperature: probabilities are softmax(log p / T)")
    speaker_norm: bool
    preprocess: dict
    licences: dict[str, str]
