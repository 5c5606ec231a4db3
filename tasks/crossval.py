"""Cross-validation task: k speaker-independent folds, reported in MLflow and on the Artifacts page."""

from __future__ import annotations

import time

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.crossval import CrossValidation, cross_validate, write_report
from affectflow.registry import configure, log_crossval, model_name
from tasks.artifacts import markdown_with_image


@task(name="crossval-report")
def crossval_report(frame: pd.DataFrame, dataset: str, dataset_version: str, home: str, config: TrainConfig,
                    preprocess: PreprocessConfig, k: int,
                    classes: list[str] | None = None) -> tuple[CrossValidation, str]:
    """Run ``k`` folds; write the report under the home's ``reports/`` and log it as one MLflow run.

    Returns the cross-validation and the report folder. No model is registered: each fold's model
    saw only part of the data; ``affectflow train`` without ``--cv`` trains the model to deploy.
    """
    logger = get_run_logger()
    paths = get_paths(home)
    cv = cross_validate(frame, config, k, classes, progress=logger.info, backbone=preprocess.backbone)
    folder = paths.reports / f"crossval-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    files = write_report(cv, folder)
    configure(paths, experiment=f"{model_name(dataset)}-crossval")
    log_crossval(cv, dataset, dataset_version, preprocess, folder)
    if "confusion" in files:
        markdown_with_image("crossval-confusion-matrix", f"{dataset}: pooled held-out predictions, {k} folds",
                            files["confusion"], cv.markdown())
    else:
        create_markdown_artifact(key="crossval-report", markdown=cv.markdown())
    logger.info("cross-validation report: %s", folder)
    return cv, str(folder)
