"""Preprocessing flows: the feature cache filled for clips (``affectflow preprocess``) or a curated dataset (the
first step of training), in chunks on a task runner chosen per run (``tasks.preprocess.task_runner``)."""

from __future__ import annotations

import os

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from affectflow.cache import ClipResult, preprocess_clips, preprocess_paths
from affectflow.config import PreprocessConfig, get_paths
from affectflow.ingest import load_dataset
from affectflow.storage import ADVICE, StorageError, storage_text
from flows.naming import dataset_run_name
from tasks.artifacts import artifact_key
from tasks.policies import PREPROCESS_TIMEOUT_S
from tasks.preprocess import on_task_runner, run_on, task_runner


def _progress(label: str, key: str):
    """Log lines and a progress artifact (the run page's bar), per tenth of the clips."""
    logger = get_run_logger()
    bar = create_progress_artifact(0.0, key=key, description=f"{label}: clips preprocessed (features cached), "
                                                             "percent.")

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            logger.info("preprocessed %d/%d clips", done, total)
            update_progress_artifact(bar, 100.0 * done / max(total, 1))
    return progress


def _failures_artifact(key: str, failed: list[dict], after: str) -> None:
    if failed:
        create_table_artifact(key=key, table=[{"clip": r["clip"], "error": r["error"]} for r in failed],
                              description=f"Clips whose features could not be computed, and why; {after}.")


@flow(name="affectflow-preprocess", log_prints=True, timeout_seconds=PREPROCESS_TIMEOUT_S)
def preprocess_flow(paths: list[str], preprocess: PreprocessConfig, cache_root: str | None = None,
                    inspect_dir: str | None = None) -> list[dict]:
    """``cache.preprocess_paths`` on this run's task runner: one line per clip (in order), then the summary.
    Run it with ``tasks.preprocess.run_on(task_runner(dask, workers), preprocess_flow, ...)``."""
    lines = preprocess_paths(paths, preprocess, cache_root if cache_root is not None else get_paths().features,
                             inspect_dir, run=on_task_runner, progress=_progress("clips", "preprocessing"))
    *per_clip, summary = lines
    get_run_logger().info("%d clips: %d from cache, %d computed, %d failed", summary["clips"], summary["cached"],
                          summary["computed"], summary["failed"])
    _failures_artifact("preprocess-failures", [line for line in per_clip if not line["ok"]], "the others went on")
    return lines


@flow(name="affectflow-features", flow_run_name=dataset_run_name("features"), timeout_seconds=PREPROCESS_TIMEOUT_S)
def features_flow(dataset: str, home: str, preprocess: PreprocessConfig) -> pd.DataFrame:
    """The dataset's manifest rows with a ``record`` column (feature file); failed clips are reported.

    A clip that failed because the disk refused its record (full, over quota, read-only) says nothing about
    the clip: the flow then fails with that cause in one line (``StorageError``), and nothing trains on
    the clips that happened to fit. Their records are whole and cached for the next run."""
    logger = get_run_logger()
    paths = get_paths(home)
    frame = load_dataset(dataset, paths)
    results: list[ClipResult] = preprocess_clips(
        list(frame["path"]), paths.features, preprocess, run=on_task_runner,
        progress=_progress(f"Clips of {dataset}", artifact_key(dataset, "preprocessing")))
    frame["record"] = [r.record for r in results]
    failed = [r for r in results if not r.ok]
    cached = sum(r.cached for r in results)
    logger.info("%d clips: %d from cache, %d computed, %d failed", len(results), cached,
                len(results) - cached - len(failed), len(failed))
    full = [r for r in failed if storage_text(r.error)]
    if full:
        first = full[0].error.splitlines()[0]
        raise StorageError(f"{len(full)} of {len(results)} clips of {dataset} could not be preprocessed: "
                           f"{storage_text(first)} (first: {first}); nothing was trained; {ADVICE}")
    _failures_artifact(artifact_key(dataset, "preprocess-failures"),
                       [{"clip": r.clip, "error": r.error} for r in failed], "training went on without them")
    return frame[frame["record"].notna()].reset_index(drop=True)


def preprocessed(paths: list[str], preprocess: PreprocessConfig, dask: str | None = None, workers: int = 1,
                 inspect_dir: str | None = None) -> list[dict]:
    """``preprocess_flow`` on Dask (``dask``: ``"local"`` or a scheduler address) or on ``workers`` threads here:
    what ``affectflow preprocess`` prints."""
    return run_on(task_runner(dask, workers), preprocess_flow, paths, preprocess, inspect_dir=inspect_dir)


def feature_records(dataset: str, home: str, preprocess: PreprocessConfig, dask: str | None = None) -> pd.DataFrame:
    """``features_flow`` on Dask (``dask``: ``"local"``, a cluster of one process per core, or a scheduler
    address) or, by default, on one thread per core of this machine."""
    return run_on(task_runner(dask, os.cpu_count() or 1), features_flow, dataset, home, preprocess)
