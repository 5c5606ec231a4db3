"""A real `affectflow train` SIGKILLed in the middle of its fit: no Prefect server outlives it, and the next
`train` ends the MLflow run it left RUNNING as FAILED (with the reason), marks its Prefect flow run Crashed,
and trains as usual."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient
from support import cli_env

from affectflow.config import Paths, activate_home
from affectflow.ingest import ingest_inbox
from affectflow.packaging import PROJECT_ROOT
from affectflow.registry import FAILURE_TAG, FLOW_RUN_TAG, configure
from affectflow.synth import write_synthetic_batch

pytestmark = pytest.mark.slow

# A fit that lasts (no early stop before epoch 40), and a gate nothing clears (no Bento to build): the test
# is about the run, not the model.
TRAIN = ["train", "--dataset", "synthetic", "--face-backend", "none", "--promote-min-uar", "10"]


def running_runs(db: Path, mode: str = "rw") -> list[str]:
    """MLflow runs RUNNING in `db`. Read-write by default: a process killed mid-write leaves a hot journal, and only
    a writable connection rolls it back (a read-only one fails, which once read as "no runs" here)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode={mode}", uri=True, timeout=30)) as con:
        return [row[0] for row in con.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'")]


def open_runs_so_far(db: Path) -> list[str]:
    """While the command runs: read-only (never creates the file), and nothing yet while it is absent or locked."""
    try:
        return running_runs(db, mode="ro")
    except sqlite3.Error:
        return []


def test_a_train_killed_mid_fit_leaves_no_server_and_its_run_is_failed_next_time(home: Paths, tmp_path: Path):
    write_synthetic_batch(home.inbox / "b1", clips=36, speakers=6, seed=3, seconds=1.0, size=64)
    assert [r.status for r in ingest_inbox(home)] == ["accepted"]
    env = cli_env(home)
    env.pop("PREFECT_API_URL", None)  # Prefect's temporary server, as a user without servers has it

    log = (tmp_path / "killed.log").open("w")
    train = subprocess.Popen([sys.executable, "-m", "cli", *TRAIN, "--epochs", "60", "--min-epochs", "60"],
                             env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 150
    while not (open_runs := open_runs_so_far(home.mlflow_db)):
        assert train.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.3)
    children = psutil.Process(train.pid).children(recursive=True)
    assert any("uvicorn" in " ".join(c.cmdline()) for c in children), "no temporary Prefect server was running"
    train.send_signal(signal.SIGKILL)
    train.wait()
    log.close()

    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"outlived the killed command: {[p.cmdline()[:4] for p in alive]}"
    [killed] = open_runs
    assert running_runs(home.mlflow_db) == [killed]  # nothing closed it: the process died outright

    again = subprocess.run([sys.executable, "-m", "cli", *TRAIN, "--epochs", "1", "--min-epochs", "0"], env=env,
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"MLflow run {killed} marked FAILED" in again.stderr

    configure(activate_home(home.home))
    client = MlflowClient()
    run = client.get_run(killed)
    assert run.info.status == "FAILED" and "killed or crashed" in run.data.tags[FAILURE_TAG]
    assert running_runs(home.mlflow_db) == []
    newest = client.search_runs([run.info.experiment_id], order_by=["attributes.start_time DESC"])[0]
    assert newest.info.status == "FINISHED" and newest.info.run_id != killed
    with contextlib.closing(sqlite3.connect(home.prefect_home / "prefect.db")) as prefect:
        [[state]] = prefect.execute("SELECT state_type FROM flow_run WHERE id = ?",
                                    (run.data.tags[FLOW_RUN_TAG],)).fetchall()
    assert state == "CRASHED"
