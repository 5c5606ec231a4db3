"""Train flow: features -> speaker-independent training -> registry -> champion -> Bento."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow

from affectflow.config import PreprocessConfig, TrainConfig, activate_home
from affectflow.ingest import dataset_version
from affectflow.registry import CHAMPION
from tasks.package import champion_bento
from tasks.preprocess import feature_records
from tasks.promote import champion_decision
from tasks.train import registered_model


@flow(name="affectflow-train", log_prints=True)
def train_flow(dataset: str = "synthetic", task: str = "multitask", epochs: int = 40,
               classes: list[str] | None = None, seed: int = 13, home: str | None = None) -> dict:
    """Train on the curated ``dataset`` and, if the new model beats the champion, package it."""
    paths = activate_home(home)
    config = replace(TrainConfig(), task=task, epochs=epochs, seed=seed)
    preprocess = PreprocessConfig()
    version = dataset_version(dataset, paths)
    frame = feature_records(dataset, str(paths.home), preprocess)
    experiment, registered = registered_model(frame, dataset, version, str(paths.home), preprocess, config,
                                              classes)
    decision = champion_decision(registered, experiment, str(paths.home))
    bento = champion_bento(registered.name, str(paths.home)) if decision.promoted else None
    return {
        "dataset": dataset,
        "dataset_version": version,
        "registered": registered.uri,
        "model_uri": f"models:/{registered.name}@{CHAMPION}",
        "promoted": decision.promoted,
        "promotion_reason": decision.reason,
        "metrics": experiment.result.metrics,
        "bento": bento,
    }


if __name__ == "__main__":
    train_flow()
