"""Training task: a speaker-independent experiment, logged and registered in MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.experiment import Experiment, run_experiment
from affectflow.predict import ModelCard
from affectflow.registry import RegisteredModel, configure, log_training
from affectflow.reports import confusion_matrix_png, metrics_markdown, training_curves_png
from tasks.artifacts import markdown_with_image


@task(name="registered-model")
def registered_model(frame: pd.DataFrame, dataset: str, dataset_version: str, home: str,
                     preprocess: PreprocessConfig, config: TrainConfig,
                     classes: list[str] | None = None) -> tuple[Experiment, RegisteredModel]:
    """Train, evaluate on unseen speakers, log everything and register a new model version."""
    logger = get_run_logger()
    experiment = run_experiment(frame, preprocess, config, classes, progress=logger.info)
    configure(get_paths(home))
    card = ModelCard(experiment.classes, preprocess, config.task, dataset_version=dataset_version)
    sample = {k: v[:2] for k, v in experiment.test.inputs.items()}
    registered = log_training(experiment.result, card, config, dataset, sample, experiment.val_metrics,
                              extra_params={"n_train": int((experiment.frame["split"] == "train").sum()),
                                            "n_test": len(experiment.test)})
    report = metrics_markdown(experiment.result.metrics, f"{registered.name} v{registered.version}: test split")
    with tempfile.TemporaryDirectory() as tmp:
        curves = training_curves_png(experiment.result.history, Path(tmp) / "curves.png")
        markdown_with_image("training-curves", f"Training curves (best epoch {experiment.result.best_epoch})", curves)
        if experiment.result.confusion is not None:
            png = confusion_matrix_png(experiment.result.confusion, experiment.classes, Path(tmp) / "cm.png")
            markdown_with_image("test-confusion-matrix", "Confusion matrix (unseen speakers)", png, report)
        else:
            create_markdown_artifact(key="test-metrics", markdown=report)
    logger.info("registered %s (run %s)", registered.uri, registered.run_id)
    return experiment, registered
