"""Training data lineage in MLflow: two real trainings with a batch accepted between them; each run carries its
manifest as a dataset input, every batch's validation report, and the drift reports of the batches accepted
since the previous model."""

import hashlib
import json

import pytest
from mlflow import MlflowClient

from affectflow.config import TrainConfig, activate_home
from affectflow.ingest import ingest_inbox
from affectflow.synth import write_synthetic_batch

pytestmark = pytest.mark.slow

FAST = TrainConfig(epochs=1, min_epochs=0, promote_min_uar=10.0)  # a fit, not a model: no champion, no Bento


def lineage_of(client: MlflowClient, run_id: str, tmp_path) -> list[dict]:
    return json.loads(open(client.download_artifacts(run_id, "lineage/batches.json", str(tmp_path))).read())


def test_each_training_run_logs_its_manifest_reports_and_new_drift(prefect_harness, home, tmp_path):
    from flows.train import train_flow

    activate_home(home.home)
    store = home.datasets / "synthetic"
    write_synthetic_batch(home.inbox / "first", clips=18, speakers=3, seed=1, seconds=1.0, size=48)
    assert [r.status for r in ingest_inbox(home)] == ["accepted"]
    for name in ("drift.md", "drift.json"):  # a batch without a drift report: listed as such, nothing fails
        (store / "first" / name).unlink(missing_ok=True)
    first = train_flow(home=str(home.home), training=FAST, face_backend="none", package=False)
    first_sha = hashlib.sha256((store / "manifest.parquet").read_bytes()).hexdigest()

    write_synthetic_batch(home.inbox / "second", clips=18, speakers=3, seed=2, seconds=1.0, size=48)
    assert [r.status for r in ingest_inbox(home)] == ["accepted"]
    (store / "second" / "drift.json").write_text('{"drifted": true}')  # the drift check's files, as test data
    (store / "second" / "drift.md").write_text("# Drift: batch second\n")
    second = train_flow(home=str(home.home), training=FAST, face_backend="none", package=False)
    second_sha = hashlib.sha256((store / "manifest.parquet").read_bytes()).hexdigest()

    client = MlflowClient()
    for summary, sha, clips in ((first, first_sha, 18), (second, second_sha, 36)):
        run = client.get_run(summary["run_id"])
        [entry] = run.inputs.dataset_inputs
        assert entry.dataset.name == "synthetic" and sha.startswith(entry.dataset.digest)
        assert json.loads(entry.dataset.source) == {"uri": str(store / "manifest.parquet")}
        assert json.loads(entry.dataset.profile)["num_rows"] == clips
        tags = {tag.key: tag.value for tag in entry.tags}
        assert tags == {"mlflow.data.context": "training", "dataset_version": summary["dataset_version"],
                        "manifest_sha256": sha}
        assert run.data.tags["manifest_sha256"] == sha

    first_rows = lineage_of(client, first["run_id"], tmp_path / "a")
    second_rows = lineage_of(client, second["run_id"], tmp_path / "b")
    assert [(r["batch"], r["clips"], r["new"]) for r in first_rows] == [("first", 18, True)]
    assert [(r["batch"], r["clips"], r["new"]) for r in second_rows] == [("first", 18, False), ("second", 18, True)]
    for row in second_rows:  # every batch names its validation report in the store, and the store has it
        assert row["report"] == str(store / row["batch"] / "report.md") and (store / row["batch"] / "report.md").is_file()
        validation = json.loads((store / row["batch"] / "report.json").read_text())
        assert (row["data_docs"], row["validation_result"]) == (validation.get("data_docs"),
                                                                validation.get("validation_result"))
    assert second_rows[0]["drift"] == []
    assert second_rows[1]["drift"] == [str(store / "second" / "drift.md"), str(store / "second" / "drift.json")]

    # Drift reports: the first run had no model before it (its one batch is new); the second carries only the
    # batch accepted after the first model.
    def drift_files(run_id: str) -> set[str]:
        return {f.path for folder in client.list_artifacts(run_id, "lineage/drift")
                for f in client.list_artifacts(run_id, folder.path)}

    assert drift_files(first["run_id"]) == set()
    assert drift_files(second["run_id"]) == {"lineage/drift/second/drift.md", "lineage/drift/second/drift.json"}
    tags = client.get_run(second["run_id"]).data.tags
    assert tags["lineage.previous_model"] == "affectflow-synthetic/1"
    assert (tags["lineage.batches"], tags["lineage.new_batches"], tags["lineage.drift_reports"]) == ("2", "1", "1")
    table = open(client.download_artifacts(second["run_id"], "lineage/batches.md", str(tmp_path / "c"))).read()
    assert "no drift report" in table and "accepted since affectflow-synthetic/1" in table
