"""The service's answers as typed models: what the OpenAPI schema (the Swagger page at ``/``) shows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from affectflow.voices import MIN_CLIPS


class Modalities(BaseModel):
    used: list[str] = Field(description="the modalities the model has an encoder for (video, audio, face)")
    found: dict[str, bool] = Field(description="which of them the upload has: video frames, audio that is not "
                                               "silence, a face in the sampled frames")


class Calibration(BaseModel):
    """What speaker calibration did for a request that named a ``speaker``."""

    speaker: str
    clips: int = Field(description="clips of this speaker heard so far, this one included (0: not calibrated, see "
                                   "note)")
    aligned: bool = Field(description="whether the clip was aligned with the voice's label-free running statistics "
                                      f"(shrunk towards the training population's): from clip {MIN_CLIPS} of a voice on "
                                      "(fewer say more about the clip than the voice)")
    note: str | None = None


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
    calibration: Calibration | None = Field(None, description="present when the request named a speaker")


class Forgotten(BaseModel):
    """The answer of /forget_speaker."""

    speaker: str
    forgotten: bool = Field(description="whether statistics of this speaker were kept (and are now gone)")


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


class WindowAnswer(BaseModel):
    """One window of a timeline: its span and, when the model could use it, its answer (as ``Prediction``)."""

    start: float = Field(description="seconds from the start of the video")
    end: float
    usable: bool = Field(description="false when none of the model's modalities is in the window")
    reason: str | None = Field(None, description="why an unusable window got no answer")
    emotion: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    arousal: float | None = None
    valence: float | None = None
    modalities: Modalities


class TimelineSummary(BaseModel):
    """Over the usable windows: the dominant emotion (most windows), each class's share of windows, mean
    probabilities and mean arousal/valence."""

    windows: int
    usable_windows: int
    unusable_windows: int
    emotion: str | None = None
    shares: dict[str, float] | None = None
    mean_probabilities: dict[str, float] | None = None
    arousal: float | None = None
    valence: float | None = None


class TimelineAnswer(BaseModel):
    """Emotion over time: one answer per sliding window, then a summary."""

    duration: float = Field(description="seconds")
    window: float = Field(description="window length, seconds")
    hop: float = Field(description="seconds between window starts")
    model_version: str
    modalities_used: list[str]
    summary: TimelineSummary
    windows: list[WindowAnswer]
