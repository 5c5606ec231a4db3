"""Train flow: features -> speaker-independent training -> registry -> champion -> Bento."""

from __future__ import annotations

from prefect import flow, get_run_logger

from affectflow.config import (
    DEFAULT_AUDIO_FEATURES,
    AudioFeatureSet,
    FaceBackendName,
    TrainConfig,
    activate_home,
    preprocessing,
)
from affectflow.ingest import dataset_version, validation_report
from affectflow.metrics import HEADLINE_METRICS
from affectflow.registry import champion_uri, ui_links
from flows.naming import dataset_run_name
from flows.preprocess import feature_records
from tasks.artifacts import publish_summary
from tasks.package import champion_bento, served_champion
from tasks.promote import champion_decision
from tasks.train import fail_open_runs, orphaned_runs, registered_model, trained_experiment


@flow(name="affectflow-train", log_prints=True, flow_run_name=dataset_run_name("train"),
      on_crashed=[fail_open_runs], on_failure=[fail_open_runs])
def train_flow(dataset: str = "synthetic", training: TrainConfig = TrainConfig(), classes: list[str] | None = None,
               face_backend: FaceBackendName = "landmarks", backbone: str | None = None, package: bool = True,
               home: str | None = None, dask: str | None = None, audio_features: AudioFeatureSet = DEFAULT_AUDIO_FEATURES) -> dict:
    """Train on the curated ``dataset`` and, if the new model beats the champion, package it.

    ``training``: every model and optimisation setting (``TrainConfig``; the same names as the options of
    ``affectflow train``). ``classes``: train on these emotions only (the others are dropped and counted).
    ``face_backend``, ``backbone`` (a pre-trained video backbone, ``.keras`` file or SavedModel folder) and
    ``audio_features`` (``config.AUDIO_FEATURE_SETS``) choose the preprocessing. ``package``: build
    a Bento of a new champion (off only where nothing serves).
    ``dask``: preprocess the clips on a Dask cluster (a scheduler address ``tcp://host:8786``, or ``"local"``);
    by default on this machine's cores. Its workers must see the home's clips and feature cache at the same path.

    First, what an earlier run killed outright left behind is put right: its MLflow run still RUNNING is
    ended FAILED (``orphaned_runs``), and a champion whose Bento was never built gets it (``served_champion``).
    A crash or failure of this run ends its own open MLflow run FAILED (``fail_open_runs``).
    """
    paths = activate_home(home)
    preprocess = preprocessing(face_backend, backbone, training.finetune_backbone, audio_features)
    version = dataset_version(dataset, paths)  # an unknown dataset fails here, before any work
    orphaned_runs(str(paths.home))
    if package:
        served_champion(dataset, str(paths.home))
    frame = feature_records(dataset, str(paths.home), preprocess, dask)
    experiment = trained_experiment(frame, preprocess, training, dataset, version, str(paths.home), classes)
    registered = registered_model(experiment, dataset, version, str(paths.home), preprocess, training)
    decision = champion_decision(registered, experiment, training, dataset, str(paths.home))
    bento = champion_bento(dataset, str(paths.home)) if decision.promoted and package else None
    metrics = experiment.result.metrics
    headline = {k: metrics[k] for k in HEADLINE_METRICS if k in metrics}
    test_speakers = int(experiment.frame.loc[experiment.frame["split"] == "test", "speaker"].nunique())
    get_run_logger().info("%s %s: %s; %s -> %s", dataset, version,
                          ", ".join(f"{k} {v:.3f}" for k, v in headline.items()), registered.uri,
                          "champion" + (f", bento {bento}" if bento else "") if decision.promoted else "not promoted")
    publish_summary(dataset, f"{dataset} {version}: {registered.name} v{registered.version}",
                    facts={"decision": ("promoted to champion" if decision.promoted else "champion kept")
                           + f": {decision.reason}", "Bento": bento or "none built",
                           "test speakers": str(test_speakers)},
                    links={**ui_links(registered), "validation report": validation_report(dataset, paths)},
                    metrics=headline)
    return {
        "dataset": dataset,
        "dataset_version": version,
        "registered": registered.uri,
        "run_id": registered.run_id,
        "test_speakers": test_speakers,
        "model_uri": champion_uri(dataset),
        "promoted": decision.promoted,
        "promotion_reason": decision.reason,
        "metrics": metrics,
        "bento": bento,
    }


if __name__ == "__main__":
    train_flow()
