"""The operations stack for real: PostgreSQL, the Prefect and MLflow servers and a worker as processes on
loopback, the deployments of prefect.yaml, a batch dropped in the inbox retrained with nobody starting the
training run, then a worker killed in the middle of a training run.

One module-scoped stack; the tests run in order and each builds on the one before (as an operator would).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from affectflow.servers import POSTGRES_BIN_DIRS, Stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("pg_ctl") or POSTGRES_BIN_DIRS),
                       reason="PostgreSQL's server is not installed (make test installs it)"),
]
ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Ops:
    """The stack under test and a small client of its Prefect REST API."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.state = stack.load()
        self.api = httpx.Client(base_url=stack.api_urls(self.state)["PREFECT_API_URL"], timeout=30)

    def prefect(self, *args: str):
        return self.stack.prefect(self.state, *args)

    def deployment_id(self, name: str) -> str:
        return self.api.get(f"/deployments/name/{name}").raise_for_status().json()["id"]

    def flow_runs(self, deployment: str) -> list[dict]:
        body = {"flow_runs": {"deployment_id": {"any_": [self.deployment_id(deployment)]}}, "sort": "EXPECTED_START_TIME_ASC"}
        return self.api.post("/flow_runs/filter", json=body).raise_for_status().json()

    def wait_for(self, deployment: str, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [run for run in self.flow_runs(deployment) if predicate(run)]
            if found:
                return found[-1]
            time.sleep(2)
        runs = [(r["name"], r["state_type"]) for r in self.flow_runs(deployment)]
        raise AssertionError(f"{what}: not within {timeout:.0f} s; runs of {deployment}: {runs}\n"
                             + (self.stack.logs / "worker-affectflow.log").read_text()[-4000:])

    def task_runs(self, flow_run_id: str) -> list[dict]:
        body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
        return self.api.post("/task_runs/filter", json=body).raise_for_status().json()

    def artifact_keys(self) -> set[str]:
        return {a["key"] for a in self.api.post("/artifacts/filter", json={"limit": 200}).raise_for_status().json()
                if a["key"]}


@pytest.fixture(scope="module")
def ops():
    # Not under pytest's temp folder: every pytest session resets /tmp/pytest-of-<user> to mode 700, and as
    # root PostgreSQL runs as `postgres`, which must be able to reach its cluster for as long as it runs.
    root = Path(tempfile.mkdtemp(prefix="affectflow-ops-"))
    root.chmod(0o711)
    stack = Stack(root / "home", ROOT)
    try:
        stack.up()
        yield Ops(stack)
    finally:
        stack.down(progress=lambda message: None)
        shutil.rmtree(root, ignore_errors=True)


def test_the_runbook_commands_work_against_the_server(ops: Ops):
    ops.prefect("deploy", "--all")
    for command in (("deployment", "ls"), ("flow-run", "ls"), ("work-pool", "ls"), ("artifact", "ls"),
                    ("automation", "ls"), ("gcl", "ls")):
        assert ops.prefect(*command).returncode == 0
    status = ops.stack.status()
    assert all(value.startswith("running") for value in status.values()), status


def test_an_accepted_batch_retrains_by_itself(ops: Ops):
    from affectflow.synth import write_synthetic_batch

    # A burst: two batches, two affectflow.batch.accepted events within the trigger's 60 s window.
    # enough to clear the promotion gate (UAR >= 2 x chance, mean CCC >= 0.3) on two unseen speakers
    write_synthetic_batch(ops.stack.home / "inbox" / "synthetic-1", clips=96, speakers=4, seed=3, seconds=1.0)
    write_synthetic_batch(ops.stack.home / "inbox" / "synthetic-2", clips=48, speakers=2, seed=4, seconds=1.0)
    ops.prefect("deployment", "run", "affectflow-ingest/ingest-inbox")
    ingest = ops.wait_for("affectflow-ingest/ingest-inbox", lambda r: r["state_type"] in TERMINAL, 240, "ingest")
    assert ingest["state_type"] == "COMPLETED"

    # Nobody starts this run: the first event does, through the deployment's trigger; the second adds nothing.
    triggered = ops.wait_for("affectflow-train/train-synthetic", lambda r: True, 120, "a triggered training run")
    assert triggered["parameters"]["dataset"] == "synthetic"
    assert triggered["created_by"]["type"] == "AUTOMATION"
    run = ops.wait_for("affectflow-train/train-synthetic", lambda r: r["state_type"] in TERMINAL, 600,
                       "the triggered training run to finish")
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["name"].startswith("train-synthetic-v-")
    assert len(ops.flow_runs("affectflow-train/train-synthetic")) == 1  # debounced
    assert len(_manifest(ops)) == 144  # and it trained on both batches

    # The registry lives in PostgreSQL and holds the new version as champion.
    import psycopg2

    state = ops.state
    with psycopg2.connect(ops.stack.database_url(state, "mlflow")) as db, db.cursor() as cursor:
        cursor.execute("SELECT name, alias, version FROM registered_model_aliases")
        assert ("affectflow-synthetic", "champion", 1) in cursor.fetchall()
    bentos = list((ops.stack.home / "bentoml" / "bentos").glob("*/*/bento.yaml"))
    assert bentos, "no Bento was built"
    keys = ops.artifact_keys()
    assert {"synthetic-run-summary", "synthetic-test-confusion-matrix", "synthetic-test-metrics",
            "synthetic-champion-decision", "synthetic-preprocessing", "ingest-results"} <= keys
    # No local file:// artifact location: the server stores artifacts (proxied), clients upload through it.
    with psycopg2.connect(ops.stack.database_url(state, "mlflow")) as db, db.cursor() as cursor:
        cursor.execute("SELECT artifact_location FROM experiments WHERE name = 'affectflow'")
        assert cursor.fetchone()[0].startswith("mlflow-artifacts:")
    assert list(ops.stack.artifacts.rglob("MLmodel"))


def test_a_quarantined_batch_reaches_the_documented_webhook(ops: Ops):
    import http.server
    import json
    import subprocess
    import sys
    import threading

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run([sys.executable, str(ROOT / "ops" / "quarantine_alert.py"),
                        f"http://127.0.0.1:{server.server_port}/hook"], check=True, capture_output=True,
                       env={**os.environ, **ops.stack.worker_env(ops.state)})
        bad = ops.stack.home / "inbox" / "synthetic-bad"
        bad.mkdir(parents=True)
        (bad / "labels.csv").write_text("path,speaker\nclip.mp4,s1\n")  # no dataset, no emotion column
        ops.prefect("deployment", "run", "affectflow-ingest/ingest-inbox")
        deadline = time.monotonic() + 180
        while not received and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        server.shutdown()
    assert received, "no notification within 180 s"
    assert "synthetic-bad" in received[0]["text"] and received[0]["title"] == "affectflow: batch quarantined"
    assert (ops.stack.home / "quarantine" / "synthetic-bad" / "report.md").exists()


def _manifest(ops: Ops) -> pd.DataFrame:
    return pd.read_parquet(ops.stack.home / "datasets" / "synthetic" / "manifest.parquet")


def test_a_worker_killed_mid_training_loses_nothing(ops: Ops):
    import psycopg2

    manifest = _manifest(ops)
    ops.prefect("deployment", "run", "affectflow-train/train-synthetic")
    running = ops.wait_for("affectflow-train/train-synthetic",
                           lambda r: r["state_type"] == "RUNNING" and any(
                               t["name"].startswith("trained-experiment") and t["state_type"] == "RUNNING"
                               for t in ops.task_runs(r["id"])), 300, "a training run in its fit")
    worker = psutil.Process(ops.state.pids["worker-affectflow"])
    for process in [*worker.children(recursive=True), worker]:  # the machine is gone: worker and its runs
        process.send_signal(signal.SIGKILL)

    crashed = ops.wait_for("affectflow-train/train-synthetic",
                           lambda r: r["id"] == running["id"] and r["state_type"] == "CRASHED", 300,
                           "the orphaned run to be marked crashed (no heartbeat)")
    assert "heartbeat" in crashed["state"]["message"]

    ops.stack.start_worker(ops.state)
    ops.stack.save(ops.state)
    ops.prefect("deployment", "run", "affectflow-train/train-synthetic")
    rerun = ops.wait_for("affectflow-train/train-synthetic",
                         lambda r: r["id"] != running["id"] and r["state_type"] in TERMINAL
                         and r["expected_start_time"] > running["expected_start_time"], 600, "the re-run")
    assert rerun["state_type"] == "COMPLETED", rerun["state"]

    pd.testing.assert_frame_equal(_manifest(ops), manifest)  # the curated store is untouched
    assert all((ops.stack.home / "datasets" / "synthetic" / path).exists() for path in manifest["path"])
    with psycopg2.connect(ops.stack.database_url(ops.state, "mlflow")) as db, db.cursor() as cursor:
        cursor.execute("SELECT version, status FROM model_versions WHERE name = 'affectflow-synthetic'")
        versions = dict(cursor.fetchall())
        cursor.execute("SELECT version FROM registered_model_aliases WHERE alias = 'champion'")
        [champion] = cursor.fetchone()
    assert set(versions.values()) == {"READY"}  # the killed run registered nothing half-way
    assert len(versions) == 2 and champion in versions


def test_backup_and_restore_bring_back_registry_runs_and_artifacts(ops: Ops, tmp_path: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=ops.stack.api_urls(ops.state)["MLFLOW_TRACKING_URI"])
    versions = {v.version for v in client.search_model_versions("name = 'affectflow-synthetic'")}
    ops.stack.backup(tmp_path / "backup", progress=lambda message: None)

    client.delete_registered_model("affectflow-synthetic")  # a bad day: the registry and artifacts are lost
    shutil.rmtree(ops.stack.artifacts)
    ops.state = ops.stack.restore(tmp_path / "backup", progress=lambda message: None)

    client = MlflowClient(tracking_uri=ops.stack.api_urls(ops.state)["MLFLOW_TRACKING_URI"])
    assert {v.version for v in client.search_model_versions("name = 'affectflow-synthetic'")} == versions
    assert client.get_model_version_by_alias("affectflow-synthetic", "champion").version in versions
    assert list(ops.stack.artifacts.rglob("MLmodel"))
    assert len(ops.flow_runs("affectflow-train/train-synthetic")) == 3  # Prefect's history came back too
    assert ops.stack.status()["worker-affectflow"].startswith("running")
