"""MLflow: log a training run, register its model, promote a champion, load models back.

The tracking store is the home's sqlite database unless ``MLFLOW_TRACKING_URI`` points at a server;
artifacts go under the home (never ``./mlruns`` of whatever directory a worker happens to run in).
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import keras
import mlflow
import numpy as np
import psutil
from mlflow import MlflowClient
from mlflow.models import infer_signature

from affectflow.backbone import BUNDLE_FOLDER, bundle, bundled
from affectflow.config import Paths, PreprocessConfig, TrainConfig, remember_setting, user_setting
from affectflow.crossval import CrossValidation
from affectflow.errors import UserError
from affectflow.lineage import TrainingData, lineage_markdown
from affectflow.mlstore import ensure_store
from affectflow.model import input_names
from affectflow.names import dataset_of, model_name
from affectflow.predict import ModelCard, Predictor
from affectflow.reports import RunReport
from affectflow.training import TrainingResult

CHAMPION = "champion"
# Run tags: who holds a training run open, and why a run that nothing runs any more was marked failed.
HOST_TAG, PID_TAG, PID_STARTED_TAG = "affectflow.host", "affectflow.pid", "affectflow.pid_started"
FLOW_RUN_TAG = "prefect.flow_run_id"
FAILURE_TAG = "failure_reason"
# Training data lineage: the newest batch a model's data holds; the next training's "since the previous model".
DATA_THROUGH_TAG = "lineage.data_through"
LINEAGE = "lineage"  # artifact folder: batches.json, batches.md, drift/<batch>/
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")
# Explicit requirements: inferring them costs seconds per logged model and guesses wrong for editable installs.
MODEL_REQUIREMENTS = ["tensorflow>=2.21,<2.22", "keras>=3.10", "numpy"]


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def configure(paths: Paths, experiment: str = "affectflow") -> str:
    """Point MLflow at the home's store and make sure the experiment exists; returns its id.

    The home's own sqlite store is built atomically, or repaired, first (``mlstore.ensure_store``)."""
    users = user_setting("MLFLOW_TRACKING_URI")  # a server of the user's stays theirs
    uri = paths.mlflow_tracking_uri
    for name in QUIET_LOGGERS:  # a new store's set-up lines read like a problem to a first-time user
        logging.getLogger(name).setLevel(logging.WARNING)
    if users is None:
        done = ensure_store(paths.mlflow_db, paths.mlflow_artifacts)
        if done:  # a repair is worth a warning; a new home's first store is not
            logging.getLogger(__name__).log(logging.INFO if done.startswith("built") else logging.WARNING, done)
    mlflow.set_tracking_uri(uri)
    if users is None:  # the home's store: MLflow exports it; another home must be able to replace it
        remember_setting("MLFLOW_TRACKING_URI", uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        # A server stores artifacts where it was told (proxied: clients upload through it); a local store here.
        location = None if uri.startswith(("http://", "https://")) else paths.mlflow_artifacts.as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def champion_uri(dataset: str) -> str:
    """``models:/affectflow-<dataset>@champion``: what ``predict``, packaging and serving load by default."""
    return f"models:/{model_name(dataset)}@{CHAMPION}"


def ui_links(registered: RegisteredModel) -> dict[str, str]:
    """Where to look at a run and its model version: MLflow UI addresses when tracking goes to a server,
    else the run id and model URI."""
    uri = mlflow.get_tracking_uri().rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return {"MLflow run": registered.run_id, "model version": registered.uri}
    experiment = mlflow.get_run(registered.run_id).info.experiment_id
    return {"MLflow run": f"{uri}/#/experiments/{experiment}/runs/{registered.run_id}",
            "model version": f"{uri}/#/models/{registered.name}/versions/{registered.version}"}


def _flat(metrics: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if np.isfinite(v)}


@contextmanager
def _run(name: str, dataset: str, dataset_version: str, config: TrainConfig, preprocess: PreprocessConfig,
         params: Mapping[str, object], report: RunReport | None = None,
         run_id: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run (``run_id``'s, resumed, when given) tagged with its dataset, version and task, the training
    and preprocessing settings and ``params`` logged, and the report's files under ``plots/`` and ``reports/``:
    every run of affectflow (training, cross-validation) starts here. A new run carries its process's
    ``owner_tags`` and ``tags`` from its creation: one that is RUNNING is never without them, even for a process
    killed the moment after (``fail_orphaned_runs`` reads them)."""
    new = None if run_id else {**owner_tags(), **(tags or {})}
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else name, tags=new) as run:
        mlflow.set_tags({"dataset": dataset, "dataset_version": dataset_version, "task": config.task})
        mlflow.log_params({**config.to_dict(), **{f"preprocess_{k}": v for k, v in preprocess.to_dict().items()},
                           **params, "dataset_version": dataset_version})
        for path in (report.plots.values() if report else ()):
            mlflow.log_artifact(str(path), "plots")
        for path in (report.tables.values() if report else ()):
            mlflow.log_artifact(str(path), "reports")
        yield run


class _EpochMetrics(mlflow.keras.MlflowCallback):
    """MLflow's Keras callback without its ``validation_*`` metrics logged at step 0 after every evaluation:
    Keras reports the same figures per epoch as ``val_*``, which the callback logs with their epoch."""

    def on_test_end(self, logs=None):
        pass


def owner_tags() -> dict[str, str]:
    """Which process holds a run open: host, process id and the process's start time (a pid is reused)."""
    me = psutil.Process()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(me.pid), PID_STARTED_TAG: f"{me.create_time():.3f}"}


@contextmanager
def live_training(data: TrainingData, config: TrainConfig, preprocess: PreprocessConfig,
                  tags: Mapping[str, str] | None = None) -> Iterator[tuple[str, list[keras.callbacks.Callback]]]:
    """The MLflow run of a training, opened before the fit and active during it: yields its id and the Keras
    callbacks to fit with (MLflow's own, which logs every epoch's losses as the epoch ends). The run's start
    time is the fit's; a fit that raises leaves the run FAILED. ``log_training(run_id=...)`` completes it.
    The run opens with the lineage of its training ``data`` (``log_lineage``).

    The run is tagged with its process (``owner_tags``) and ``tags`` (the orchestrator's run id, say): a
    process killed outright closes nothing, and ``fail_orphaned_runs`` finds such runs by these tags."""
    with _run(f"{data.dataset}-{config.task}", data.dataset, data.version, config, preprocess, {}, tags=tags) as run:
        log_lineage(data)
        yield run.info.run_id, [_EpochMetrics()]


def previous_model(dataset: str) -> tuple[str, datetime] | None:
    """The dataset's newest registered model version (``NAME/VERSION``) and the newest batch its data held
    (``DATA_THROUGH_TAG``; the start of its run for a run that predates the tag); None before the first."""
    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{model_name(dataset)}'")
    if not versions:
        return None
    newest = max(versions, key=lambda version: int(version.version))
    try:
        run = client.get_run(newest.run_id)
    except mlflow.exceptions.MlflowException:  # its run was deleted for good: the version's registration time bounds its data
        return f"{newest.name}/{newest.version}", datetime.fromtimestamp(newest.creation_timestamp / 1000, UTC)
    through = run.data.tags.get(DATA_THROUGH_TAG)
    since = datetime.fromisoformat(through) if through else datetime.fromtimestamp(run.info.start_time / 1000, UTC)
    return f"{newest.name}/{newest.version}", since


def log_lineage(data: TrainingData) -> None:
    """Log to the active run where its training data came from: the manifest as an MLflow dataset input
    (context ``training``; name: the dataset, digest: the manifest file's sha256, cut to MLflow's length, whole
    in the ``manifest_sha256`` tag; source: the manifest's path), ``lineage/batches.json`` and ``.md`` (per
    batch: validation report, Data Docs, validation result, drift report), and the drift reports of the batches
    accepted since the previous model under ``lineage/drift/<batch>/``. The rows are logged as schema and
    profile only: MLflow keeps no copy of the data."""
    previous = previous_model(data.dataset)
    batches = data.batches(previous[1] if previous else None)
    new = [row for row in batches if row["new"]]
    dataset = mlflow.data.from_pandas(data.rows, source=str(data.manifest), name=data.dataset, digest=data.digest)
    mlflow.log_input(dataset, context="training",
                     tags={"dataset_version": data.version, "manifest_sha256": data.sha256})
    mlflow.log_dict(batches, f"{LINEAGE}/batches.json")
    mlflow.log_text(lineage_markdown(batches, previous[0] if previous else None), f"{LINEAGE}/batches.md")
    for row in new:
        for path in row["drift"]:
            mlflow.log_artifact(path, f"{LINEAGE}/drift/{row['batch']}")
    newest_docs = batches[-1]["data_docs"] if batches else None
    mlflow.set_tags({"manifest_sha256": data.sha256, DATA_THROUGH_TAG: data.data_through.isoformat(),
                     "lineage.previous_model": previous[0] if previous else "none",
                     "lineage.batches": len(batches), "lineage.new_batches": len(new),
                     "lineage.validation_reports": sum(row["report"] is not None for row in batches),
                     "lineage.drift_reports": sum(bool(row["drift"]) for row in new),
                     **({"lineage.data_docs": newest_docs} if newest_docs else {})})


def _process_alive(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _running_runs() -> list:
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000) if experiments else []


def mark_failed(run_id: str, reason: str) -> None:
    """End ``run_id`` as FAILED, the reason in its ``failure_reason`` tag."""
    client = MlflowClient()
    client.set_tag(run_id, FAILURE_TAG, reason[:5000])
    client.set_terminated(run_id, status="FAILED")


def fail_orphaned_runs(max_age_s: float, flow_run_running: Callable[[str], bool | None] | None = None) -> list[dict]:
    """End as FAILED every RUNNING run of this store that nothing runs any more, each with a ``failure_reason``
    tag saying why; returns ``[{"run_id", "reason", FLOW_RUN_TAG}]``. A run is orphaned when

    - its process (``owner_tags``) ran on this host and is gone (a SIGKILL, an out-of-memory kill, a power cut),
    - or ``flow_run_running(its flow run id)`` says its orchestrator run has ended (another host's run),
    - or it has been RUNNING for longer than ``max_age_s`` (the training time limit).
    """
    host, now, found = socket.gethostname(), time.time(), []
    for run in _running_runs():
        tags = run.data.tags
        age = now - run.info.start_time / 1000
        reason = None
        if tags.get(HOST_TAG) == host and tags.get(PID_TAG, "").isdigit():  # its process can be asked
            if not _process_alive(int(tags[PID_TAG]), float(tags.get(PID_STARTED_TAG) or 0)):
                reason = (f"its process (pid {tags[PID_TAG]} on {host}) ended without closing the run: "
                          f"killed or crashed")
        elif flow_run_running and tags.get(FLOW_RUN_TAG) and flow_run_running(tags[FLOW_RUN_TAG]) is False:
            reason = f"its Prefect flow run {tags[FLOW_RUN_TAG]} is no longer running"
        elif age > max_age_s:
            reason = f"RUNNING for {age / 3600:.1f} h, longer than the training time limit ({max_age_s / 3600:.1f} h)"
        if reason is not None:
            mark_failed(run.info.run_id, f"{reason}; marked failed at {time.strftime('%Y-%m-%d %H:%M:%S')}")
            found.append({"run_id": run.info.run_id, "reason": reason, FLOW_RUN_TAG: tags.get(FLOW_RUN_TAG)})
    return found


def fail_runs_of_flow_run(flow_run_id: str, reason: str) -> list[str]:
    """End as FAILED the RUNNING runs tagged with ``flow_run_id`` (a flow run that crashed or failed)."""
    ended = []
    for run in _running_runs():
        if run.data.tags.get(FLOW_RUN_TAG) == flow_run_id:
            mark_failed(run.info.run_id, reason)
            ended.append(run.info.run_id)
    return ended


def log_training(result: TrainingResult, card: ModelCard, config: TrainConfig, dataset: str,
                 sample_inputs: dict[str, np.ndarray], val_metrics: dict[str, float], report: RunReport,
                 extra_params: Mapping[str, object] | None = None, run_id: str | None = None) -> RegisteredModel:
    """Log params, test metrics, the report (``reports.training_report``) and the model of one training run,
    and register the model as a new version. ``run_id``: the run ``live_training`` opened, which already holds
    the per-epoch metrics; without it, a new run gets them from ``result.history``."""
    name = model_name(dataset)
    # Only what the model takes: a corpus without faces (say) trains a model without the face inputs.
    sample_inputs = {k: sample_inputs[k] for k in input_names(result.model)}
    params = {"classes": ",".join(card.classes), "best_epoch": result.best_epoch, **(extra_params or {})}
    if result.linear_strength is not None:  # the C the validation speakers chose (``linear_head``)
        params["linear_head_c"] = result.linear_strength
    with (_run(f"{dataset}-{config.task}", dataset, card.dataset_version, config, card.preprocess, params,
               report, run_id) as run,
          tempfile.TemporaryDirectory() as tmp):
        if run_id is None:
            for epoch in range(len(result.history["loss"])):
                mlflow.log_metrics({k: v[epoch] for k, v in result.history.items()}, step=epoch)
        mlflow.log_metrics({**_flat(result.metrics, "test_"), **_flat(val_metrics, "val_")})
        if "backbone" in input_names(result.model):  # the run carries the file its embeddings need
            mlflow.log_artifacts(str(bundle(card.preprocess.backbone, Path(tmp)).parent), BUNDLE_FOLDER)
        outputs = {k: np.asarray(v) for k, v in result.model(sample_inputs, training=False).items()}
        info = mlflow.tensorflow.log_model(
            result.model, name="model", signature=infer_signature(sample_inputs, outputs),
            registered_model_name=name, pip_requirements=MODEL_REQUIREMENTS, metadata=card.to_dict(),
        )
    registered = RegisteredModel(name, str(info.registered_model_version), run.info.run_id)
    _describe(registered, card, result.metrics)
    return registered


def _describe(model: RegisteredModel, card: ModelCard, metrics: Mapping[str, float]) -> None:
    """What the registry's version page says: whose model, on which data, how good, where the report is."""
    client = MlflowClient()
    headline = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("uar", "war", "macro_f1", "ccc_arousal", "ccc_valence")
                         if k in metrics)
    client.update_model_version(model.name, model.version, description=(
        f"{card.dataset} {card.dataset_version}, {card.task}, classes {', '.join(card.classes)}. Test (unseen "
        f"speakers): {headline}. Report: the run's plots/ and reports/ (runs:/{model.run_id})."))
    for key, value in {"dataset": card.dataset, "dataset_version": card.dataset_version, "task": card.task,
                       **{f"test_{k}": f"{metrics[k]:.4f}" for k in ("uar", "ccc_mean") if k in metrics}}.items():
        client.set_model_version_tag(model.name, model.version, key, value)


def log_crossval(cv: CrossValidation, dataset: str, dataset_version: str, preprocess: PreprocessConfig,
                 folder: Path) -> str:
    """One MLflow run (experiment ``affectflow-<dataset>-crossval``) with the summary metrics and the
    report folder (``crossval.write_report``); nothing is registered. Returns the run id."""
    params = {"k": len(cv.folds), "classes": ",".join(cv.classes)}
    with _run(f"{dataset}-{cv.config.task}-cv{len(cv.folds)}", dataset, dataset_version, cv.config, preprocess,
              params) as run:
        mlflow.log_metrics(cv.flat_metrics())
        mlflow.log_artifacts(str(folder), "crossval")
    return run.info.run_id


def champion_datasets() -> list[str]:
    """The datasets whose registered model has a champion (what ``predict`` can answer from)."""
    found = MlflowClient().search_registered_models(f"name LIKE '{model_name('')}%'")
    return sorted(dataset for model in found if CHAMPION in (model.aliases or {})
                  and (dataset := dataset_of(model.name)) is not None)


def models_overview(bentos: Mapping[str, str], pinned: Mapping[str, str | None] | None = None) -> list[dict]:
    """Per dataset with a registered model: its champion and newest version (URIs), ``bentos[dataset]`` (its
    newest Bento) and ``pinned[dataset]`` (the model version that Bento serves, ``NAME/VERSION``); ``agrees``:
    whether that is the champion (None when there is nothing to compare)."""
    pinned = pinned or {}
    rows = []
    for model in MlflowClient().search_registered_models(f"name LIKE '{model_name('')}%'"):
        dataset = dataset_of(model.name)
        if dataset is None:
            continue
        versions = MlflowClient().search_model_versions(f"name = '{model.name}'")
        newest = max((int(v.version) for v in versions), default=None)
        current = (model.aliases or {}).get(CHAMPION)
        served = pinned.get(dataset)
        rows.append({"dataset": dataset, "champion": f"models:/{model.name}/{current}" if current else None,
                     "latest": f"models:/{model.name}/{newest}" if newest else None,
                     "bento": bentos.get(dataset), "bento_model": f"models:/{served}" if served else None,
                     "agrees": (served == f"{model.name}/{current}") if current else None})
    return sorted(rows, key=lambda row: row["dataset"])


def champion(name: str) -> RegisteredModel | None:
    """The version behind the ``champion`` alias, if any."""
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    return RegisteredModel(name, str(version.version), version.run_id)


def set_champion(model: RegisteredModel) -> None:
    MlflowClient().set_registered_model_alias(model.name, CHAMPION, model.version)


def resolve(uri: str) -> str:
    """``NAME/VERSION`` for a ``models:/NAME@alias`` or ``models:/NAME/VERSION`` URI; other URIs as given."""
    if not uri.startswith("models:/"):
        return uri
    name, sep, alias = uri.removeprefix("models:/").partition("@")
    if sep:
        return f"{name}/{MlflowClient().get_model_version_by_alias(name, alias).version}"
    return uri.removeprefix("models:/")


def load_predictor(uri: str) -> Predictor:
    """A ``Predictor`` from any MLflow model URI (``models:/NAME@champion``, ``runs:/...``), with the
    pre-trained backbone logged in its run when the model takes backbone embeddings."""
    try:
        info = mlflow.models.get_model_info(uri)
    except (mlflow.exceptions.MlflowException, OSError) as err:
        raise UserError(f"no model at {uri}: {getattr(err, 'message', err)} (`affectflow train` registers one; "
                        f"`mlflow ui` lists them)") from err
    metadata = dict(info.metadata or {})
    if "classes" not in metadata:
        raise ValueError(f"{uri} is not an affectflow model (its MLmodel has no affectflow metadata)")
    metadata["model_version"] = resolve(uri)
    card, model = ModelCard.from_dict(metadata), mlflow.tensorflow.load_model(uri)
    if "backbone" in input_names(model):
        local = mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path=BUNDLE_FOLDER)
        copy = bundled(Path(local).parent)
        card = replace(card, preprocess=replace(card.preprocess, backbone=str(copy)))
    return Predictor(model, card)
