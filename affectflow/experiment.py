"""One training experiment on a curated dataset: labels, split, fit, evaluate; no orchestration.

Prefect tasks and the CLI call these functions; they never import Prefect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from affectflow.arrays import Arrays, concatenate, load_arrays
from affectflow.augment import training_copies
from affectflow.breakdown import Breakdown, break_down
from affectflow.calibration import Calibration, calibrate, scaled
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.evaluation import predict_arrays, score
from affectflow.labels import choose_classes, labelled_frame
from affectflow.model import EMOTION_OUTPUT
from affectflow.reports import RunReport, reliability_png, training_report
from affectflow.splits import speaker_split
from affectflow.training import Progress, TrainingResult, ready_for, train

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    result: TrainingResult
    classes: tuple[str, ...]
    frame: pd.DataFrame          # every usable clip with its split
    val_metrics: dict[str, float]
    test: Arrays
    preprocess: PreprocessConfig
    calibration: Calibration | None = None   # fitted on the validation speakers; None: no emotion head or refit
    run_id: str | None = None                # the MLflow run that watched the fit (``registry.live_training``)

    @property
    def temperature(self) -> float:
        """What the served model divides its log-probabilities by (1: uncalibrated)."""
        return self.calibration.temperature if self.calibration else 1.0

    def test_breakdown(self) -> Breakdown:
        """The test split per speaker and group and per modality."""
        rows = self.frame[self.frame["split"] == "test"]
        return break_down(self.result.model, rows, self.test, self.classes)

    def sample_inputs(self, n: int = 2) -> dict[str, np.ndarray]:
        """The first ``n`` test clips' inputs: the example MLflow derives the model signature from."""
        return {k: v[:n] for k, v in self.test.inputs.items()}


def experiment_report(experiment: Experiment, folder: Path, title: str = "Test split") -> RunReport:
    """Curves, confusion matrix and the test split's tables (metrics, by group, ablation) in ``folder``."""
    result = experiment.result
    tables = {f"test_{name}": text for name, text in experiment.test_breakdown().markdown(title).items()}
    report = training_report(result.history, result.metrics, result.confusion, experiment.classes, folder, tables,
                             title)
    if experiment.calibration is not None:
        raw = predict_arrays(result.model, experiment.test)[EMOTION_OUTPUT]
        report.plots["reliability"] = reliability_png(
            {"softmax": raw, f"calibrated (T={experiment.temperature:.2f})": scaled(raw, experiment.temperature)},
            experiment.test.labels, folder / "reliability.png")
    return report


def run_experiment(frame: pd.DataFrame, preprocess: PreprocessConfig, config: TrainConfig,
                   classes: Sequence[str] | None = None, progress: Progress = log.info,
                   watchers: Sequence[keras.callbacks.Callback] = ()) -> Experiment:
    """Split by speaker, train on train, select on val, report on the whole test split.

    ``Experiment.test`` holds the test arrays as the model takes them (speakers aligned when
    ``config.speaker_norm``), so a champion is scored on exactly what the challenger saw.

    ``frame`` needs ``record`` (feature file), ``speaker``, ``emotion`` and optionally arousal/valence.
    ``watchers``: Keras callbacks for the fit (``training.train``).
    """
    chosen = choose_classes(frame["emotion"], classes)
    frame = labelled_frame(frame, chosen)
    frame["split"] = speaker_split(frame["speaker"], config.test_fraction, config.val_fraction, config.seed)
    sets = {name: load_arrays(frame[frame["split"] == name], chosen) for name in ("train", "val", "test")}
    if config.augment:
        copies = training_copies(frame[frame["split"] == "train"], preprocess, config.augment, config.seed, progress)
        sets["train"] = concatenate([sets["train"], load_arrays(copies, chosen)])
    progress(f"training on {len(sets['train'])} clips, validating on {len(sets['val'])}, "
             f"testing on {len(sets['test'])} (speakers never shared)")
    result = train(sets["train"], sets["val"], chosen, config, progress, backbone=preprocess.backbone,
                   watchers=watchers)
    test = ready_for(result.model, sets["test"], config)
    test_outputs = predict_arrays(result.model, test)
    result.metrics, result.confusion = score(test.labels, test.affect, test_outputs, chosen)
    if result.refit:  # trained on the validation clips too: their metrics would flatter it, they cannot calibrate it
        return Experiment(result, chosen, frame, {}, test, preprocess)
    val = ready_for(result.model, sets["val"], config)
    val_outputs = predict_arrays(result.model, val)
    val_metrics = score(val.labels, val.affect, val_outputs, chosen)[0]
    calibration = None
    if EMOTION_OUTPUT in val_outputs and len(val):
        calibration = calibrate(val_outputs[EMOTION_OUTPUT], val.labels, test_outputs[EMOTION_OUTPUT], test.labels)
        result.metrics.update(calibration.metrics())
        progress(f"confidence calibrated on the validation speakers: T={calibration.temperature:.2f}, test ECE "
                 f"{calibration.ece_before:.3f} -> {calibration.ece_after:.3f}")
    return Experiment(result, chosen, frame, val_metrics, test, preprocess, calibration)
