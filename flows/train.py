"""Train flow: features -> speaker-independent training -> registry -> champion -> Bento."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow

from affectflow.config import PreprocessConfig, TrainConfig, activate_home, with_backbone
from affectflow.ingest import dataset_version
from affectflow.registry import CHAMPION
from tasks.package import champion_bento
from tasks.preprocess import feature_records
from tasks.promote import champion_decision
from tasks.train import registered_model


@flow(name="affectflow-train", log_prints=True)
def train_flow(dataset: str = "synthetic", task: str = "multitask", epochs: int = 40,
               classes: list[str] | None = None, seed: int = 13, refit: bool = False,
               home: str | None = None, backbone: str | None = None, finetune_backbone: bool = False) -> dict:
    """Train on the curated ``dataset`` and, if the new model beats the champion, package it.

    ``refit``: after early stopping, refit on training and validation speakers for the best epoch
    count (more data for the final model; its validation metrics are then not reported).
    ``backbone``: a pre-trained video backbone (``.keras`` file or SavedModel folder) whose cached
    embeddings the model takes; ``finetune_backbone`` trains it inside the model instead (``.keras`` only).
    """
    paths = activate_home(home)
    config = replace(TrainConfig(), task=task, epochs=epochs, seed=seed, refit=refit,
                     finetune_backbone=finetune_backbone)
    preprocess = with_backbone(PreprocessConfig(), backbone, full_frames=finetune_backbone)
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
