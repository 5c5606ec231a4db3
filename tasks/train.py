"""Training tasks: a speaker-independent experiment, then its run logged and its model registered in MLflow."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.concurrency.sync import concurrency

from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.experiment import Experiment, experiment_report, run_experiment
from affectflow.predict import ModelCard
from affectflow.registry import RegisteredModel, configure, live_training, log_training
from affectflow.servers import TRAINING_LIMIT
from tasks.artifacts import publish_report
from tasks.policies import STORAGE_RETRIES, TRAINING_TIMEOUT_S


@task(name="trained-experiment", timeout_seconds=TRAINING_TIMEOUT_S)
def trained_experiment(frame: pd.DataFrame, preprocess: PreprocessConfig, config: TrainConfig, dataset: str,
                       dataset_version: str, home: str, classes: list[str] | None = None) -> Experiment:
    """Split by speaker, fit, evaluate on the unseen test speakers. The MLflow run is open while the model
    trains: its losses appear epoch by epoch, and its duration is the training's.

    The fit holds a slot of the global concurrency limit ``training`` (created by ``affectflow servers up``;
    one slot: one fit per machine or GPU at a time, later fits wait). Without a server there is no limit.
    The slot is a lease renewed while the fit runs: if the process dies, it frees itself within a minute.
    """
    logger = get_run_logger()
    configure(get_paths(home))
    with (concurrency(TRAINING_LIMIT, occupy=1, lease_duration=60),
          live_training(dataset, dataset_version, config, preprocess) as (run_id, watchers)):
        experiment = run_experiment(frame, preprocess, config, classes, progress=logger.info, watchers=watchers)
    return dataclasses.replace(experiment, run_id=run_id)


@task(name="registered-model", **STORAGE_RETRIES)
def registered_model(experiment: Experiment, dataset: str, dataset_version: str, home: str,
                     preprocess: PreprocessConfig, config: TrainConfig) -> RegisteredModel:
    """Log the run (params, curves, report, model) and register a new model version."""
    configure(get_paths(home))
    card = ModelCard(experiment.classes, preprocess, config.task, dataset_version=dataset_version,
                     speaker_norm=config.speaker_norm, dataset=dataset, temperature=experiment.temperature)
    splits = experiment.frame["split"].value_counts()
    with tempfile.TemporaryDirectory() as tmp:
        report = experiment_report(experiment, Path(tmp))
        registered = log_training(experiment.result, card, config, dataset, experiment.sample_inputs(),
                                  experiment.val_metrics, report,
                                  extra_params={"n_train": int(splits.get("train", 0)), "n_test": len(experiment.test),
                                                "temperature": round(experiment.temperature, 4)},
                                  run_id=experiment.run_id)
        publish_report(report, dataset,
                       f"{registered.name} v{registered.version}, best epoch {experiment.result.best_epoch}")
    get_run_logger().info("registered %s (run %s)", registered.uri, registered.run_id)
    return registered
