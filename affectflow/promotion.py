"""Who serves: a new model becomes the ``challenger``; it takes the ``champion`` alias only through the gate.

The gate (MLflow's model validation: ``MetricThreshold`` and ``validate_evaluation_results``):

- absolute floors (``TrainConfig.promote_min_uar``, ``promote_min_ccc``): test UAR at least that many times
  chance (1 / classes) when the model has an emotion head, mean test CCC at least that when it has an affect
  head;
- and, when there is a champion trained for the same classes and preprocessing, a selection score (mean of
  UAR and mean CCC) at least the champion's **on the same held-out clips** (the champion is re-scored on
  the challenger's test split).

The decision, both scores and the reason are recorded on the challenger's MLflow run. A person can
override it with ``promote`` (a chosen version) or ``rollback`` (the previous champion), which is recorded
on the version too.

Decisions on one dataset happen one at a time (``decision_lock``, a lock file in the home), and the gate never
promotes out of order: a challenger registered before the current champion (a lower version: two trainings
overlapped and the later one was decided first) is rejected, whatever its score.

The champion alias moves first, its Bento is built after: a process killed in between leaves the newest
Bento serving the previous champion. ``reconcile`` finds and repairs that (``affectflow models reconcile``;
``train`` and ``serve`` run it first).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import MetricThreshold
from mlflow.models.evaluation import EvaluationResult
from mlflow.models.evaluation.validation import ModelValidationFailedException, validate_evaluation_results

from affectflow.config import Paths, TrainConfig, get_paths
from affectflow.errors import UserError
from affectflow.evaluation import evaluate
from affectflow.experiment import Experiment
from affectflow.names import model_name
from affectflow.packaging import build_bento, newest_bentos, save_to_bentoml
from affectflow.registry import (
    RegisteredModel,
    champion,
    champion_datasets,
    champion_uri,
    load_predictor,
    set_champion,
)
from affectflow.storage import file_lock

CHALLENGER = "challenger"
CHAMPION_SINCE = "champion_since"  # version tag: when it last became champion (what rollback goes back to)


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


def floors(metrics: dict[str, float], n_classes: int, config: TrainConfig) -> dict[str, float]:
    """The absolute floor of each gated metric the model has."""
    found = {"uar": config.promote_min_uar / max(n_classes, 1), "ccc_mean": config.promote_min_ccc}
    return {name: value for name, value in found.items() if name in metrics}


def challenge(challenger: RegisteredModel, experiment: Experiment, config: TrainConfig) -> Promotion:
    """Gate ``challenger`` (see the module) and move the aliases; the decision is logged on its run."""
    client = MlflowClient()
    client.set_registered_model_alias(challenger.name, CHALLENGER, challenger.version)
    metrics = experiment.result.metrics
    score = selection_score(metrics)
    candidate = {**{k: float(metrics[k]) for k in ("uar", "ccc_mean") if k in metrics}, "score": score}
    thresholds = {name: MetricThreshold(threshold=float(value), greater_is_better=True)
                  for name, value in floors(metrics, len(experiment.classes), config).items()}
    current = champion(challenger.name)
    if current is not None and int(current.version) > int(challenger.version):
        decision = Promotion(False, challenger.uri, score, current.uri, None,
                             f"out of order: {current.uri}, registered after this version, is already champion")
        _record(challenger, decision, thresholds)
        return decision
    champion_score, baseline, why = None, None, "no champion yet"
    if current is not None:
        incumbent = load_predictor(current.uri)
        if (incumbent.card.classes == tuple(experiment.classes)
                and incumbent.card.preprocess.hash() == experiment.preprocess.hash()):
            scored = evaluate(incumbent.model, experiment.test, experiment.classes)[0]
            champion_score = selection_score(scored)
            baseline = EvaluationResult(metrics={**{k: float(scored.get(k, np.nan)) for k in candidate},
                                                 "score": champion_score}, artifacts={})
            thresholds["score"] = MetricThreshold(min_relative_change=0.0, greater_is_better=True)
            why = f"scored {score:.3f} against the champion's {champion_score:.3f} on the same clips"
        else:
            why = "champion not comparable (other classes or preprocessing)"
    try:
        validate_evaluation_results(thresholds, EvaluationResult(metrics=candidate, artifacts={}), baseline)
    except ModelValidationFailedException as failed:
        decision = Promotion(False, challenger.uri, score, current.uri if current else None, champion_score,
                             f"gate not cleared: {' '.join(str(failed.message).split())}")
    else:
        crown(challenger, f"passed the gate; {why}")
        decision = Promotion(True, challenger.uri, score, current.uri if current else None, champion_score,
                             f"passed the gate; {why}")
    _record(challenger, decision, thresholds)
    return decision


@contextmanager
def decision_lock(dataset: str, paths: Paths | None = None) -> Iterator[None]:
    """Hold the home's lock on ``dataset``'s champion (``<home>/locks/champion-<dataset>.lock``) while reading,
    comparing and moving aliases; the kernel releases it when a holder dies."""
    with file_lock((paths or get_paths()).home / "locks" / f"champion-{dataset}.lock"):
        yield


def crown(model: RegisteredModel, reason: str, by: str = "gate") -> None:
    """Make ``model`` the champion (and no longer a challenger), noting when, why and by whom on the version."""
    client = MlflowClient()
    set_champion(model)
    try:
        client.delete_registered_model_alias(model.name, CHALLENGER)
    except MlflowException:
        pass
    for key, value in {CHAMPION_SINCE: str(time.time()), "promoted_by": by, "promotion_reason": reason}.items():
        client.set_model_version_tag(model.name, model.version, key, value)


def _record(challenger: RegisteredModel, decision: Promotion, thresholds: dict[str, MetricThreshold]) -> None:
    client = MlflowClient()
    client.set_tag(challenger.run_id, "promotion", "promoted" if decision.promoted else "rejected")
    client.set_tag(challenger.run_id, "promotion_reason", decision.reason[:5000])
    for name, threshold in thresholds.items():
        if threshold.threshold is not None:
            client.log_metric(challenger.run_id, f"gate_min_{name}", threshold.threshold)
    client.log_metric(challenger.run_id, "promotion_score", decision.challenger_score)
    if decision.champion_score is not None:
        client.log_metric(challenger.run_id, "promotion_champion_score", decision.champion_score)


def promote_version(name: str, version: str, reason: str) -> RegisteredModel:
    """A person's decision: ``version`` of ``name`` becomes champion, whatever the gate said."""
    client = MlflowClient()
    try:
        found = client.get_model_version(name, version)
    except MlflowException as err:
        raise UserError(f"no version {version} of {name}: {err.message}") from err
    model = RegisteredModel(name, str(found.version), found.run_id)
    crown(model, reason, by="person")
    return model


def previous_champion(name: str) -> str:
    """The version that was champion before the current one (the newest ``champion_since`` before it)."""
    client = MlflowClient()
    current = champion(name)
    if current is None:
        raise UserError(f"{name} has no champion to roll back from")
    since = {str(v.version): float(v.tags[CHAMPION_SINCE])
             for v in client.search_model_versions(f"name = '{name}'") if CHAMPION_SINCE in v.tags}
    earlier = [v for v, t in since.items() if v != current.version and t < since.get(current.version, float("inf"))]
    if not earlier:
        raise UserError(f"{name} v{current.version} is the first champion: nothing to roll back to")
    return max(earlier, key=since.get)


def package_champion(dataset: str) -> str:
    """The dataset's champion as a new version of its BentoML model and a Bento; returns the Bento tag."""
    predictor = load_predictor(champion_uri(dataset))
    return build_bento(save_to_bentoml(predictor.model, predictor.card))


@dataclass(frozen=True)
class Reconciled:
    """What ``reconcile`` found and did for one dataset."""

    dataset: str
    champion: str | None   # ``affectflow-<dataset>/<N>``
    bento: str | None      # the newest Bento afterwards (what ``affectflow serve`` serves)
    served: str | None     # the model version that Bento pins
    built: bool            # whether a Bento was built here
    note: str              # what was found and done, in words


def reconcile(datasets: Iterable[str] | None = None) -> list[Reconciled]:
    """Make each dataset's newest Bento serve its champion: where it pins another model version (a kill between
    the champion alias moving and its Bento being built, by the train flow, ``promote`` or ``rollback``), or
    there is none, build one from the champion. Idempotent: a dataset in agreement costs one look at the
    registry and one at the Bento store (together). ``datasets``: all that have a champion or a Bento."""
    newest = newest_bentos()
    chosen = sorted(set(datasets) if datasets is not None else set(champion_datasets()) | set(newest))
    done = []
    for dataset in chosen:
        current = champion(model_name(dataset))
        expected = f"{current.name}/{current.version}" if current else None
        bento = newest.get(dataset)
        served = bento.model_version if bento else None
        if expected is None:
            note = "no champion: nothing to serve" + (f" (newest Bento {bento.tag} pins {served})" if bento else "")
            done.append(Reconciled(dataset, None, bento.tag if bento else None, served, False, note))
        elif served == expected:
            done.append(Reconciled(dataset, expected, bento.tag, served, False, f"{bento.tag} serves the champion {expected}"))
        else:
            tag = package_champion(dataset)
            built = newest_bentos().get(dataset)
            why = f"the newest Bento {bento.tag} pinned {served or 'an unknown version'}" if bento else "there was no Bento"
            done.append(Reconciled(dataset, expected, tag, built.model_version if built else None, True,
                                   f"built {tag} from the champion {expected} ({why})"))
    return done


def override(dataset: str, version: str | None, reason: str) -> tuple[RegisteredModel, str]:
    """A person's promotion (``version``) or rollback (``version`` None: the previous champion), then its
    Bento, so that ``affectflow serve`` follows. Returns the new champion and the Bento tag."""
    name = model_name(dataset)
    with decision_lock(dataset):
        model = promote_version(name, version or previous_champion(name), reason)
    return model, package_champion(dataset)
