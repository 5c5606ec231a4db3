"""Promotion task: challenger vs champion on the same clips."""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from affectflow.config import get_paths
from affectflow.experiment import Experiment
from affectflow.promotion import Promotion, challenge
from affectflow.registry import RegisteredModel, configure


@task(name="champion-decision")
def champion_decision(registered: RegisteredModel, experiment: Experiment, home: str) -> Promotion:
    configure(get_paths(home))
    decision = challenge(registered, experiment)
    get_run_logger().info("promotion: %s (%s)", "promoted" if decision.promoted else "kept champion",
                          decision.reason)
    create_table_artifact(key="champion-decision", table=[{k: str(v) for k, v in asdict(decision).items()}])
    return decision
