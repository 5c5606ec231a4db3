"""One training experiment on a curated dataset: labels, split, fit, evaluate; no orchestration.

Prefect tasks and the CLI call these functions; they never import Prefect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.evaluation import evaluate
from affectflow.labels import AFFECT_DIMENSIONS, EMOTIONS, affect_of
from affectflow.splits import speaker_split
from affectflow.training import Arrays, Progress, TrainingResult, load_arrays, ready_for, train

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    result: TrainingResult
    classes: tuple[str, ...]
    frame: pd.DataFrame          # every usable clip with its split
    val_metrics: dict[str, float]
    test: Arrays
    preprocess: PreprocessConfig


def choose_classes(emotions: pd.Series, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The requested class list, or the dataset's emotions in canonical vocabulary order."""
    if classes:
        unknown = sorted(set(classes) - set(EMOTIONS))
        if unknown:
            raise ValueError(f"unknown classes {unknown}; the canonical vocabulary is {list(EMOTIONS)}")
        return tuple(classes)
    present = set(emotions)
    return tuple(e for e in EMOTIONS if e in present)


def labelled_frame(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Rows of the chosen classes with ``[arousal, valence]`` filled from the circumplex where missing.

    Dropped classes are logged with their counts, never silently.
    """
    keep = frame["emotion"].isin(classes)
    if (~keep).any():
        log.warning("dropping %d clips outside the class list: %s", int((~keep).sum()),
                    frame.loc[~keep, "emotion"].value_counts().to_dict())
    frame = frame.loc[keep].copy()
    for dim in AFFECT_DIMENSIONS:
        if dim not in frame:
            frame[dim] = np.nan
    intensity = frame["intensity"] if "intensity" in frame else pd.Series(1.0, index=frame.index)
    table = [affect_of(e, 1.0 if pd.isna(i) else float(i)) for e, i in zip(frame["emotion"], intensity)]
    for j, dim in enumerate(AFFECT_DIMENSIONS):
        frame[dim] = frame[dim].astype(float).fillna(pd.Series([t[j] for t in table], index=frame.index))
    return frame.reset_index(drop=True)


def run_experiment(frame: pd.DataFrame, preprocess: PreprocessConfig, config: TrainConfig,
                   classes: Sequence[str] | None = None, progress: Progress = log.info) -> Experiment:
    """Split by speaker, train on train, select on val, report on the whole test split.

    ``Experiment.test`` holds the test arrays as the model takes them (speakers aligned when
    ``config.speaker_norm``), so a champion is scored on exactly what the challenger saw.

    ``frame`` needs ``record`` (feature file), ``speaker``, ``emotion`` and optionally arousal/valence.
    """
    chosen = choose_classes(frame["emotion"], classes)
    frame = labelled_frame(frame, chosen)
    frame["split"] = speaker_split(frame["speaker"], config.test_fraction, config.val_fraction, config.seed)
    sets = {name: load_arrays(frame[frame["split"] == name], chosen) for name in ("train", "val", "test")}
    progress(f"training on {len(sets['train'])} clips, validating on {len(sets['val'])}, "
             f"testing on {len(sets['test'])} (speakers never shared)")
    result = train(sets["train"], sets["val"], chosen, config, progress, backbone=preprocess.backbone)
    # A refit model was trained on the validation clips too: their metrics would flatter it.
    val_metrics = {} if result.refit else evaluate(result.model, ready_for(result.model, sets["val"], config), chosen)[0]
    test = ready_for(result.model, sets["test"], config)
    result.metrics, result.confusion = evaluate(result.model, test, chosen)
    return Experiment(result, chosen, frame, val_metrics, test, preprocess)
