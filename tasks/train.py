"""Training tasks: a speaker-independent experiment, then its run logged and its model registered in MLflow."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from uuid import UUID

import pandas as pd
from prefect import get_client, get_run_logger, runtime, task
from prefect.concurrency.sync import concurrency
from prefect.states import Crashed

from affectflow.config import PreprocessConfig, TrainConfig, get_paths
from affectflow.experiment import Experiment, experiment_report, run_experiment
from affectflow.lineage import training_data
from affectflow.predict import ModelCard
from affectflow.registry import (
    FLOW_RUN_TAG,
    RegisteredModel,
    configure,
    fail_orphaned_runs,
    fail_runs_of_flow_run,
    live_training,
    log_training,
)
from affectflow.servers import TRAINING_LIMIT
from affectflow.storage import StorageError
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
    The run opens with the lineage of the dataset's manifest (``registry.log_lineage``), read before any wait.
    """
    logger = get_run_logger()
    paths = get_paths(home)
    configure(paths)
    data = training_data(dataset, dataset_version, paths)
    tags = {FLOW_RUN_TAG: str(runtime.flow_run.id)} if runtime.flow_run.id else {}
    with (concurrency(TRAINING_LIMIT, occupy=1, lease_duration=60),
          live_training(data, config, preprocess, tags) as (run_id, watchers)):
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


def _flow_run_running(flow_run_id: str) -> bool | None:
    """Whether Prefect still has ``flow_run_id`` pending or running (None: unknown to this API)."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except Exception:  # noqa: BLE001 - another server's run, or a deleted one: unknown, not ended
        return None
    return state is not None and not state.is_final()


@task(name="orphaned-runs")
def orphaned_runs(home: str) -> list[dict]:
    """Before training: MLflow runs left RUNNING by a process that was killed (SIGKILL, out of memory) or that
    outlived the training time limit are ended as FAILED with a ``failure_reason`` tag
    (``registry.fail_orphaned_runs``); their Prefect flow runs, if Prefect still has them running (with
    Prefect's temporary server nobody else notices the death), are marked Crashed with the same reason."""
    logger = get_run_logger()
    try:
        configure(get_paths(home))
        found = fail_orphaned_runs(TRAINING_TIMEOUT_S + 600, _flow_run_running)
    except StorageError:
        raise  # a full disk stops the run here, in one line, before any work
    except Exception as err:  # noqa: BLE001 - bookkeeping of earlier runs must not stop this one
        logger.warning("could not look for MLflow runs left open by killed processes: %s", err)
        return []
    for run in found:
        logger.warning("MLflow run %s marked FAILED: %s", run["run_id"], run["reason"])
        owner = run[FLOW_RUN_TAG]
        if owner and owner != str(runtime.flow_run.id) and _flow_run_running(owner):
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(owner, Crashed(message=f"found dead: {run['reason']}"), force=True)
            logger.warning("flow run %s marked Crashed", owner)
    return found


def fail_open_runs(flow, flow_run, state) -> None:
    """A train flow's ``on_crashed``/``on_failure`` hook: its MLflow runs still RUNNING end as FAILED, the
    flow run's final state as the reason (a fit that raised has closed its run already)."""
    home = (flow_run.parameters or {}).get("home")
    try:
        configure(get_paths(home))
        ended = fail_runs_of_flow_run(str(flow_run.id), f"flow run {flow_run.name} ended {state.type.value}: "
                                                         f"{(state.message or '').strip()[:500]}")
    except Exception as err:  # noqa: BLE001 - a hook must not hide the flow's own failure
        print(f"could not mark the MLflow runs of {flow_run.name} failed: {err}", file=sys.stderr)
        return
    for run_id in ended:
        print(f"MLflow run {run_id} marked FAILED ({state.type.value})", file=sys.stderr)
