"""Promotion task: challenger vs champion on the same clips, the decision an event."""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from affectflow.config import TrainConfig, get_paths
from affectflow.experiment import Experiment
from affectflow.promotion import Promotion, challenge, decision_lock
from affectflow.registry import RegisteredModel, configure
from tasks.artifacts import artifact_key
from tasks.events import emit
from tasks.policies import STORAGE_RETRIES


@task(name="champion-decision", **STORAGE_RETRIES)
def champion_decision(registered: RegisteredModel, experiment: Experiment, config: TrainConfig, dataset: str,
                      home: str) -> Promotion:
    """Promote ``registered`` if it clears the gate (``promotion``); emits ``affectflow.model.promoted`` or
    ``.rejected``."""
    paths = get_paths(home)
    configure(paths)
    with decision_lock(dataset, paths):  # one decision per dataset at a time, never out of order
        decision = challenge(registered, experiment, config)
    get_run_logger().info("promotion: %s (%s)", "promoted" if decision.promoted else "kept champion",
                          decision.reason)
    emit(f"affectflow.model.{'promoted' if decision.promoted else 'rejected'}", dataset,
         {"model": registered.name, "version": registered.version, "run_id": registered.run_id,
          "reason": decision.reason, "score": decision.challenger_score, "champion_score": decision.champion_score})
    create_table_artifact(key=artifact_key(dataset, "champion-decision"),
                          table=[{k: str(v) for k, v in asdict(decision).items()}],
                          description="Challenger against champion on the same held-out clips, and the decision.")
    return decision
