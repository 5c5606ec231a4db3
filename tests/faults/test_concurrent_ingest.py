"""Two real `affectflow ingest` processes on one home: started together, or the second 12 s after the first while
the first holds the store. Neither crashes, every clip ends in the store exactly once, and no inbox folder is left
behind.

Before: started together on a fresh home, each started Prefect's temporary API, whose first start migrates
``prefect.db``: concurrent migrations killed servers at start-up (``index ... already exists``, ``UNIQUE
constraint failed``), so a command recovered by luck or timed out; and both listed the same batches, so the
slower one crashed with ``LabelFileError: labels.csv is missing`` (3 of 3 runs) and its report writing left
``inbox/<batch>/`` holding only report files, quarantined by the next run. Now the first start of the API is
serialised (``cli.embedded_api``) and an ingest waits for the one running (``<home>/.ingest-run.lock``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from affectflow.config import Paths
from affectflow.ingest import MANIFEST, RUN_LOCK, ingest_inbox
from affectflow.synth import write_synthetic_batch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BATCHES = ("b1", "b2", "b3")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Three small synthetic batches (12 clips each, distinct content)."""
    folder = tmp_path_factory.mktemp("pristine")
    for seed, name in enumerate(BATCHES):
        write_synthetic_batch(folder / name, clips=12, speakers=2, seed=seed, seconds=0.6, size=48)
    return folder


def start_ingest(home: Paths, log: Path) -> subprocess.Popen:
    """`python -m cli ingest` as a user runs it: no Prefect server configured, the home's own Prefect database."""
    env = {**os.environ, "AFFECTFLOW_HOME": str(home.home), "PREFECT_HOME": str(home.prefect_home),
           "BENTOML_HOME": str(home.bentoml_home)}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "cli", "ingest"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True)


def finish(process: subprocess.Popen, log: Path) -> list[dict]:
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 0, log.read_text()[-4000:]
    return json.loads(out.splitlines()[-1])


def wait_for(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def assert_each_clip_stored_once(home: Paths, pristine: Path) -> None:
    """Every original file is in ``datasets/synthetic/<batch>/`` with its bytes, each clip once in the manifest,
    and nothing is left in the inbox or quarantine (no phantom report-only folder)."""
    store = home.datasets / "synthetic"
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == list(BATCHES)
    for original in (p for p in pristine.rglob("*") if p.is_file()):
        assert (store / original.relative_to(pristine)).read_bytes() == original.read_bytes()
    manifest = pd.read_parquet(store / MANIFEST)
    assert len(manifest) == 12 * len(BATCHES) and manifest["clip_hash"].is_unique
    assert list(home.inbox.iterdir()) == [] and list(home.quarantine.iterdir()) == []


def test_two_ingests_started_together(home: Paths, pristine: Path, tmp_path: Path) -> None:
    shutil.copytree(pristine, home.inbox, dirs_exist_ok=True)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [start_ingest(home, log) for log in logs]
    results = [finish(process, log) for process, log in zip(processes, logs)]

    done = sorted(r["batch"] for result in results for r in result)
    assert done == list(BATCHES) and all(r["status"] == "accepted" for result in results for r in result)
    assert_each_clip_stored_once(home, pristine)
    text = "".join(log.read_text() for log in logs)
    assert "waiting for another command to finish setting up Prefect's database" in text  # one set it up
    assert "Traceback" not in text
    assert ingest_inbox(home) == []  # the next run: nothing left to do, nothing to repair


def test_an_ingest_started_12_s_later_waits_for_the_running_one(home: Paths, pristine: Path,
                                                                 tmp_path: Path) -> None:
    """The first is held still (SIGSTOP) the moment it holds the store, as a long batch would hold it, so the
    second always arrives while the first is mid-way."""
    shutil.copytree(pristine, home.inbox, dirs_exist_ok=True)
    lock = home.home / RUN_LOCK
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_ingest(home, first_log)
    started = time.monotonic()
    try:
        wait_for(lambda: lock.is_file() and f"pid {first.pid}," in lock.read_text(), "the first to hold the store")
        first.send_signal(signal.SIGSTOP)
        time.sleep(max(0.0, 12.0 - (time.monotonic() - started)))
        second = start_ingest(home, second_log)
        wait_for(lambda: "waiting for it to finish" in second_log.read_text(), "the second to wait")
        assert f"pid {first.pid}," in second_log.read_text()  # it names whom it waits for
        assert list(home.datasets.iterdir()) == [] and sorted(p.name for p in home.inbox.iterdir()) == list(BATCHES)
    finally:
        first.send_signal(signal.SIGCONT)
    first_results, second_results = finish(first, first_log), finish(second, second_log)

    assert [r["batch"] for r in first_results] == list(BATCHES) and second_results == []
    assert_each_clip_stored_once(home, pristine)
    assert "Traceback" not in first_log.read_text() + second_log.read_text()
    assert lock.read_text() == ""
