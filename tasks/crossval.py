"""Cross-validation task: k speaker-independent folds, reported in MLflow and on the Artifacts page."""

from __future__ import annotations

import dataclasses
import time

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.crossval import CrossValidation, candidate_grid, cross_validate, extra_training, write_report
from affectflow.names import model_name
from affectflow.registry import configure, log_crossval
from tasks.artifacts import artifact_key, markdown_with_image
from tasks.policies import TRAINING_TIMEOUT_S


@task(name="crossval-report", timeout_seconds=TRAINING_TIMEOUT_S)
def crossval_report(frame: pd.DataFrame, dataset: str, dataset_version: str, home: str, config: TrainConfig,
                    preprocess: PreprocessConfig, k: int, classes: list[str] | None = None, select: str | None = None,
                    extra_frames: dict[str, pd.DataFrame] | None = None) -> tuple[CrossValidation, str]:
    """Run ``k`` folds; write the report under the home's ``reports/`` and log it as one MLflow run.

    ``select``: nested selection over this grid of training settings (``crossval.candidate_grid``);
    ``extra_frames``: other corpora's records, added to every training side on ``classes``.
    Returns the cross-validation and the report folder. No model is registered: each fold's model
    saw only part of the data; ``affectflow train`` without ``--cv`` trains the model to deploy.
    """
    logger = get_run_logger()
    paths = get_paths(home)
    extra = extra_training(extra_frames, classes) if extra_frames else None
    cv = cross_validate(frame, config, k, classes, progress=logger.info, preprocess=preprocess,
                        candidates=candidate_grid(config, select) if select else (), extra=extra)
    cv = dataclasses.replace(cv, trained_with=tuple(extra_frames or ()))
    folder = paths.reports / f"crossval-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    files = write_report(cv, folder)
    configure(paths, experiment=f"{model_name(dataset)}-crossval")
    log_crossval(cv, dataset, dataset_version, preprocess, folder)
    description = f"{k}-fold speaker-independent cross-validation: mean ± std per metric, pooled confusion."
    if "confusion" in files:
        markdown_with_image(artifact_key(dataset, "crossval"), f"{dataset}: pooled held-out predictions, {k} folds",
                            files["confusion"], cv.markdown(), description=description)
    else:
        create_markdown_artifact(key=artifact_key(dataset, "crossval"), markdown=cv.markdown(),
                                 description=description)
    logger.info("cross-validation report: %s", folder)
    return cv, str(folder)
