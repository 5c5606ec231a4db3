"""Cross-validation flow: features -> k speaker-independent folds -> report (mean ± std, pooled)."""

from __future__ import annotations

from prefect import flow

from affectflow.config import (
    DEFAULT_AUDIO_FEATURES,
    AudioFeatureSet,
    FaceBackendName,
    TrainConfig,
    activate_home,
    preprocessing,
)
from affectflow.crossval import shared_classes
from affectflow.ingest import dataset_version
from flows.naming import dataset_run_name
from flows.preprocess import feature_records
from tasks.crossval import crossval_report


@flow(name="affectflow-crossval", log_prints=True, flow_run_name=dataset_run_name("crossval"))
def crossval_flow(dataset: str = "synthetic", k: int = 5, training: TrainConfig = TrainConfig(refit=True),
                  classes: list[str] | None = None, face_backend: FaceBackendName = "landmarks",
                  backbone: str | None = None, home: str | None = None,
                  audio_features: AudioFeatureSet = DEFAULT_AUDIO_FEATURES, select: str | None = None,
                  with_datasets: list[str] | None = None) -> dict:
    """Estimate how a model trained on ``dataset`` does on speakers it never heard: every speaker is
    tested once, by a model trained without them. ``training.refit`` (on by default here): each fold's
    model is refitted on its training and validation speakers for the early-stopped epoch count.
    ``select``: settings chosen inside each fold by its validation speakers (nested), e.g.
    ``"dropout=0.3,0.5 hidden_units=64,128"``. ``with_datasets``: other curated datasets whose clips join
    every training side (never tested), on the classes all share unless ``classes`` says. The other
    parameters as in the train flow."""
    paths = activate_home(home)
    preprocess = preprocessing(face_backend, backbone, training.finetune_backbone, audio_features)
    version = dataset_version(dataset, paths)
    frame = feature_records(dataset, str(paths.home), preprocess)
    extra = {name: feature_records(name, str(paths.home), preprocess) for name in with_datasets or ()}
    if extra and not classes:
        classes = list(shared_classes([frame, *extra.values()]))
    cv, report = crossval_report(frame, dataset, version, str(paths.home), training, preprocess, k, classes,
                                 select, extra or None)
    return {"dataset": dataset, "dataset_version": version, "k": k, "report": report,
            "summary": cv.summary(), "pooled": cv.pooled()}


if __name__ == "__main__":
    crossval_flow()
