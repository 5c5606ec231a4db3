"""Preprocessing task: the feature cache filled for every clip of a curated dataset."""

from __future__ import annotations

import os

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from affectflow.cache import preprocess_clips
from affectflow.config import PreprocessConfig, get_paths
from affectflow.ingest import load_dataset
from affectflow.storage import ADVICE, StorageError, storage_text
from tasks.artifacts import artifact_key
from tasks.policies import PREPROCESS_TIMEOUT_S


def _workers(clips: int) -> int:
    """A process pool costs ~3 s to start (imports, numba cache): worth it only for larger batches."""
    return max(1, min(os.cpu_count() or 1, clips // 100))


@task(name="feature-records", timeout_seconds=PREPROCESS_TIMEOUT_S)
def feature_records(dataset: str, home: str, preprocess: PreprocessConfig) -> pd.DataFrame:
    """The dataset's manifest rows with a ``record`` column (feature file); failed clips are reported.

    A clip that failed because the disk refused its record (full, over quota, read-only) says nothing about
    the clip: the task then fails with that cause in one line (``StorageError``), and nothing trains on
    the clips that happened to fit. Their records are whole and cached for the next run.

    Progress: a log line and a progress artifact (the run page's bar) per tenth of the clips."""
    logger = get_run_logger()
    paths = get_paths(home)
    frame = load_dataset(dataset, paths)
    bar = create_progress_artifact(0.0, key=artifact_key(dataset, "preprocessing"),
                                   description=f"Clips of {dataset} preprocessed (features cached), percent.")

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            logger.info("preprocessed %d/%d clips", done, total)
            update_progress_artifact(bar, 100.0 * done / max(total, 1))

    results = preprocess_clips(list(frame["path"]), paths.features, preprocess,
                               workers=_workers(len(frame)), progress=progress)
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
    if failed:
        create_table_artifact(key=artifact_key(dataset, "preprocess-failures"),
                              table=[{"clip": r.clip, "error": r.error} for r in failed],
                              description="Clips whose features could not be computed, and why; training went on "
                                          "without them.")
    return frame[frame["record"].notna()].reset_index(drop=True)
