"""Train flow: features -> speaker-independent training -> registry -> champion -> Bento."""

from __future__ import annotations

from prefect import flow

from affectflow.config import FaceBackendName, TrainConfig, activate_home, preprocessing
from affectflow.ingest import dataset_version
from affectflow.registry import champion_uri
from tasks.package import champion_bento
from tasks.preprocess import feature_records
from tasks.promote import champion_decision
from tasks.train import registered_model


@flow(name="affectflow-train", log_prints=True)
def train_flow(dataset: str = "synthetic", training: TrainConfig = TrainConfig(), classes: list[str] | None = None,
               face_backend: FaceBackendName = "landmarks", backbone: str | None = None, package: bool = True,
               home: str | None = None) -> dict:
    """Train on the curated ``dataset`` and, if the new model beats the champion, package it.

    ``training``: every model and optimisation setting (``TrainConfig``; the same names as the options of
    ``affectflow train``). ``classes``: train on these emotions only (the others are dropped and counted).
    ``face_backend`` and ``backbone`` (a pre-trained video backbone, ``.keras`` file or SavedModel folder)
    choose the preprocessing. ``package``: build a Bento of a new champion (off only where nothing serves).
    """
    paths = activate_home(home)
    preprocess = preprocessing(face_backend, backbone, training.finetune_backbone)
    version = dataset_version(dataset, paths)
    frame = feature_records(dataset, str(paths.home), preprocess)
    experiment, registered = registered_model(frame, dataset, version, str(paths.home), preprocess, training,
                                              classes)
    decision = champion_decision(registered, experiment, str(paths.home))
    bento = champion_bento(dataset, str(paths.home)) if decision.promoted and package else None
    return {
        "dataset": dataset,
        "dataset_version": version,
        "registered": registered.uri,
        "run_id": registered.run_id,
        "test_speakers": int(experiment.frame.loc[experiment.frame["split"] == "test", "speaker"].nunique()),
        "model_uri": champion_uri(dataset),
        "promoted": decision.promoted,
        "promotion_reason": decision.reason,
        "metrics": experiment.result.metrics,
        "bento": bento,
    }


if __name__ == "__main__":
    train_flow()
