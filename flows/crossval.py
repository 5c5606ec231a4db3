"""Cross-validation flow: features -> k speaker-independent folds -> report (mean ± std, pooled)."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow

from affectflow.config import PreprocessConfig, TrainConfig, activate_home, with_backbone
from affectflow.ingest import dataset_version
from tasks.crossval import crossval_report
from tasks.preprocess import feature_records


@flow(name="affectflow-crossval", log_prints=True)
def crossval_flow(dataset: str = "synthetic", k: int = 5, task: str = "multitask", epochs: int = 40,
                  classes: list[str] | None = None, seed: int = 13, refit: bool = True,
                  home: str | None = None, backbone: str | None = None, finetune_backbone: bool = False) -> dict:
    """Estimate how a model trained on ``dataset`` does on speakers it never heard: every speaker is
    tested once, by a model trained without them. ``refit``: each fold's model is refitted on its
    training and validation speakers for the early-stopped epoch count. ``backbone`` and
    ``finetune_backbone`` as in the train flow."""
    paths = activate_home(home)
    config = replace(TrainConfig(), task=task, epochs=epochs, seed=seed, refit=refit,
                     finetune_backbone=finetune_backbone)
    preprocess = with_backbone(PreprocessConfig(), backbone, full_frames=finetune_backbone)
    version = dataset_version(dataset, paths)
    frame = feature_records(dataset, str(paths.home), preprocess)
    cv, report = crossval_report(frame, dataset, version, str(paths.home), config, k, classes, preprocess.backbone)
    return {"dataset": dataset, "dataset_version": version, "k": k, "report": report,
            "summary": cv.summary(), "pooled": cv.pooled()}


if __name__ == "__main__":
    crossval_flow()
