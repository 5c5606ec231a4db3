"""Challenger vs champion on the same evaluation clips; the better one holds the ``champion`` alias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectflow.evaluation import evaluate
from affectflow.experiment import Experiment
from affectflow.registry import RegisteredModel, champion, load_predictor, set_champion


def selection_score(metrics: dict[str, float]) -> float:
    """Mean of the headline metrics the model has: UAR for emotions, mean CCC for affect."""
    parts = [metrics[k] for k in ("uar", "ccc_mean") if k in metrics and np.isfinite(metrics[k])]
    return float(np.mean(parts)) if parts else float("-inf")


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    challenger: str
    challenger_score: float
    champion: str | None
    champion_score: float | None
    reason: str


def challenge(challenger: RegisteredModel, experiment: Experiment) -> Promotion:
    """Evaluate the current champion on the challenger's test clips and keep the better model.

    A champion with other classes or preprocessing cannot be scored on these clips; the challenger
    then takes over (it is the only model trained for the current setting), and the reason says so.
    """
    score = selection_score(experiment.result.metrics)
    current = champion(challenger.name)
    if current is None:
        set_champion(challenger)
        return Promotion(True, challenger.uri, score, None, None, "no champion yet")
    incumbent = load_predictor(current.uri)
    comparable = (incumbent.card.classes == tuple(experiment.classes)
                  and incumbent.card.preprocess.hash() == experiment.preprocess.hash())
    if not comparable:
        set_champion(challenger)
        return Promotion(True, challenger.uri, score, current.uri, None,
                         "champion not comparable (other classes or preprocessing)")
    champion_score = selection_score(evaluate(incumbent.model, experiment.test, experiment.classes)[0])
    if score >= champion_score:
        set_champion(challenger)
        return Promotion(True, challenger.uri, score, current.uri, champion_score, "challenger scored higher or equal")
    return Promotion(False, challenger.uri, score, current.uri, champion_score, "champion scored higher")
