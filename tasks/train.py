"""Training task: a speaker-independent experiment, logged and registered in MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from affectflow.ablation import ablate, ablation_markdown
from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.evaluation import predict_arrays, prediction_frame
from affectflow.experiment import Experiment, run_experiment
from affectflow.groups import group_metrics, groups_markdown
from affectflow.predict import ModelCard
from affectflow.registry import RegisteredModel, configure, log_training
from affectflow.reports import confusion_matrix_png, metrics_markdown, training_curves_png
from tasks.artifacts import markdown_with_image


def test_breakdown(experiment: Experiment) -> dict[str, str]:
    """Markdown tables of the test split: metrics per speaker (and per demographic group where the
    clips carry one) and per modality (each hidden in turn)."""
    model, classes = experiment.result.model, experiment.classes
    rows = experiment.frame[experiment.frame["split"] == "test"]
    predictions = prediction_frame(rows, predict_arrays(model, experiment.test), classes)
    return {"groups": groups_markdown(group_metrics(predictions, classes), "Test split by group"),
            "ablation": ablation_markdown(ablate(model, experiment.test, classes), "Test split, modality ablation")}


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
    sample = {k: v[:2] for k, v in experiment.test.inputs.items()}
    breakdown = test_breakdown(experiment)
    registered = log_training(experiment.result, card, config, dataset, sample, experiment.val_metrics,
                              extra_params={"n_train": int((experiment.frame["split"] == "train").sum()),
                                            "n_test": len(experiment.test)},
                              reports={"test_by_group.md": breakdown["groups"],
                                       "test_ablation.md": breakdown["ablation"]})
    for key, markdown in (("test-by-group", breakdown["groups"]), ("test-ablation", breakdown["ablation"])):
        create_markdown_artifact(key=key, markdown=markdown)
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
