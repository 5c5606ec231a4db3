"""Training task: a speaker-independent experiment, logged and registered in MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.experiment import Experiment, experiment_report, run_experiment
from affectflow.predict import ModelCard
from affectflow.registry import RegisteredModel, configure, log_training
from tasks.artifacts import publish_report


@task(name="registered-model")
def registered_model(frame: pd.DataFrame, dataset: str, dataset_version: str, home: str,
                     preprocess: PreprocessConfig, config: TrainConfig,
                     classes: list[str] | None = None) -> tuple[Experiment, RegisteredModel]:
    """Train, evaluate on unseen speakers, log everything and register a new model version."""
    logger = get_run_logger()
    experiment = run_experiment(frame, preprocess, config, classes, progress=logger.info)
    configure(get_paths(home))
    card = ModelCard(experiment.classes, preprocess, config.task, dataset_version=dataset_version,
                     speaker_norm=config.speaker_norm)
    splits = experiment.frame["split"].value_counts()
    with tempfile.TemporaryDirectory() as tmp:
        report = experiment_report(experiment, Path(tmp))
        registered = log_training(experiment.result, card, config, dataset, experiment.sample_inputs(),
                                  experiment.val_metrics, report,
                                  extra_params={"n_train": int(splits.get("train", 0)), "n_test": len(experiment.test)})
        publish_report(report, f"{registered.name} v{registered.version}, best epoch {experiment.result.best_epoch}")
    logger.info("registered %s (run %s)", registered.uri, registered.run_id)
    return experiment, registered
