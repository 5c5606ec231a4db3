"""Preprocessing as Prefect work: clips in chunks, each chunk a task on the flow's task runner.

Where chunks run is the flow's task runner (``task_runner``): threads of this process (Prefect's thread pool:
measured faster here than its process pool for 200 clips, 1.54x against 1.21x for two workers on two cores: a
process pool pays its imports on every run; ``benchmarks/scaling.py``), or a Dask cluster through ``prefect-dask`` (a ``LocalCluster`` for ``dask="local"``, an existing one
for ``dask="tcp://host:8786"``). A clip that fails is a failed result with its reason, never a failed flow; a
chunk whose worker died is retried (Prefect task retries; Dask also reschedules it on a live worker), and only
when every try failed do its clips fail, with that reason. Records are written atomically by whichever worker
computes them, so a killed worker leaves no partial record.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, TypeVar

from prefect import Flow, task
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.states import Completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from affectflow.cache import Chunks, ClipResult, preprocess_chunk
from affectflow.config import PreprocessConfig

# Clips per task at most: ~2-4 s of work, so Prefect's per-task cost (a few state changes through its API,
# ~0.1 s) stays small, and a killed worker loses little. Fewer clips per task when that keeps every worker busy.
R = TypeVar("R")
CHUNK_CLIPS = 16
CHUNKS_PER_WORKER = 4


def task_runner(dask: str | None = None, workers: int = 1) -> TaskRunner:
    """Where preprocessing chunks run. ``dask``: None for this machine (``workers`` threads of this process),
    ``"local"`` for a Dask ``LocalCluster`` of ``workers`` single-threaded processes, or a scheduler address
    (``tcp://host:8786``) of a running cluster."""
    if dask is None:
        return ThreadPoolTaskRunner(max_workers=max(1, workers))
    from prefect_dask import DaskTaskRunner

    if dask == "local":
        return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, workers), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return DaskTaskRunner(address=dask)


def _slots(runner: TaskRunner) -> int:
    """How many chunks the runner computes at once."""
    from prefect_dask import DaskTaskRunner

    if isinstance(runner, DaskTaskRunner):
        return max(1, sum(runner.client.nthreads().values()))
    return getattr(runner, "_max_workers", 1)


def chunk_bounds(clips: int, slots: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk: at most ``CHUNK_CLIPS`` clips, at least ``CHUNKS_PER_WORKER`` chunks per
    slot where there are clips enough, their number a multiple of the slots and their sizes within one clip of
    each other, so the slots finish together: 200 clips on 2 slots are 14 chunks of 14-15, not 12 of 16 and one
    of 8 that one worker runs alone at the end (``benchmarks/scaling.py``)."""
    if clips == 0:
        return []
    count = max(math.ceil(clips / CHUNK_CLIPS), CHUNKS_PER_WORKER * slots)
    count = min(clips, math.ceil(count / slots) * slots)
    edges = [round(i * clips / count) for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def _chunk_name() -> str:
    from prefect.runtime import task_run

    clips = task_run.parameters["clips"]
    return f"preprocess {Path(clips[0]).name}" + (f" +{len(clips) - 1}" if len(clips) > 1 else "")


@task(name="preprocess-chunk", task_run_name=_chunk_name, retries=2, retry_delay_seconds=2)
def preprocess_chunk_task(clips: list[str], cache_root: str, cfg: PreprocessConfig):
    """Records for a chunk of clips (absolute paths). Completed even when some clips fail: the message names
    them and why (the UI shows it on the task run)."""
    results = preprocess_chunk(clips, cache_root, cfg)
    failed = [r for r in results if not r.ok]
    message = (f"{len(failed)} of {len(results)} clips failed: " + "; ".join(r.error.splitlines()[0] for r in failed)
               if failed else f"{len(results)} clip" + "s" * (len(results) > 1))
    return Completed(data=results, message=message[:2000])


def _failed(clips: list[Path], reason: str) -> list[ClipResult]:
    return [ClipResult(str(clip), False, reason, None, None, 0, 0, 0.0, False) for clip in clips]


def on_task_runner(clips: list[Path], cache_root: Path, cfg: PreprocessConfig) -> Chunks:
    """``cache.ChunkRunner`` for a flow: chunks submitted to the running flow's task runner, results yielded
    as chunks finish. A chunk that failed every try fails its clips with the reason."""
    runner = FlowRunContext.get().task_runner
    futures = {preprocess_chunk_task.submit([str(c) for c in clips[start:stop]], str(cache_root), cfg): (start, stop)
               for start, stop in chunk_bounds(len(clips), _slots(runner))}
    for future in as_completed(list(futures)):
        start, stop = futures[future]
        try:
            results = future.result()
        except Exception as err:  # noqa: BLE001 - every try failed (a worker died each time): its clips fail
            results = _failed(clips[start:stop], f"chunk failed after retries: {type(err).__name__}: {err}")
        yield start, results


def run_on(runner: TaskRunner, flow: Flow[..., R], *args: Any, **kwargs: Any) -> R:
    """``flow(*args, **kwargs)`` with its tasks on ``runner``. Workers in other processes report task states to
    this process's Prefect API: without a server configured, that is Prefect's temporary server on loopback,
    named to them here (each would otherwise start a temporary server of its own, and the run would show none
    of their work). Workers on other machines need a server they can reach (``PREFECT_API_URL``)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run = flow.with_options(task_runner=runner)
    if PREFECT_API_URL.value() or isinstance(runner, ThreadPoolTaskRunner):
        return run(*args, **kwargs)
    server = SubprocessASGIServer()
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        return run(*args, **kwargs)
