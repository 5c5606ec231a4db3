"""End to end under Prefect's test harness: synthetic batch -> ingest -> features -> train -> MLflow
-> champion -> Bento; then the CLI evaluates the champion on speakers it never saw."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client

from affectflow.config import TrainConfig, activate_home
from affectflow.registry import configure
from affectflow.synth import SYNTH_EMOTIONS, write_synthetic_batch
from affectflow.voices import MIN_CLIPS

pytestmark = pytest.mark.slow

CHANCE = 1 / len(SYNTH_EMOTIONS)


def run_cli(*args: str, home) -> dict:
    env = {**os.environ, "AFFECTFLOW_HOME": str(home.home)}
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True,
                          text=True, timeout=900, check=False)  # a hang guard (a loaded CI machine is slow)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pipeline_end_to_end(prefect_harness, home, tmp_path):
    from flows.pipeline import pipeline_flow
    from flows.train import train_flow

    activate_home(home.home)
    write_synthetic_batch(home.inbox / "batch-a", clips=216, speakers=9, seed=1, seconds=1.0)
    (home.inbox / "broken").mkdir()
    (home.inbox / "broken" / "labels.csv").write_text("path,dataset,speaker,emotion\nclip.mp4,synthetic,x,joy\n")

    summary = pipeline_flow(home=str(home.home), training=TrainConfig(epochs=30))

    statuses = {b["batch"]: b["status"] for b in summary["batches"]}
    assert statuses == {"batch-a": "accepted", "broken": "quarantined"}
    assert (home.quarantine / "broken" / "report.md").is_file()
    assert summary["dataset_version"].startswith("v-")
    metrics = summary["metrics"]
    assert metrics["n"] == 72  # three held-out speakers x 24 clips: every test clip evaluated
    assert metrics["uar"] > 2 * CHANCE, metrics  # learning happened, on speakers never seen in training
    assert metrics["ccc_arousal"] > 0.2 and metrics["ccc_valence"] > 0.2, metrics
    assert summary["promoted"] and summary["bento"].startswith("affectflow-synthetic:")

    with get_client(sync_client=True) as prefect:
        response = prefect.request("POST", "/artifacts/filter", json={"limit": 200, "sort": "CREATED_DESC"})
        artifacts = {artifact["key"]: artifact for artifact in response.json()}
    per_dataset = {f"synthetic-{kind}" for kind in ("quarantine-report", "training-curves", "test-confusion-matrix",
                                                    "champion-decision", "test-by-group", "test-ablation", "test-reliability",
                                                    "run-summary", "preprocessing")}
    assert {"ingest-results", *per_dataset} <= set(artifacts)
    assert all(artifacts[key]["description"] for key in per_dataset)

    client = MlflowClient()
    version = client.get_model_version_by_alias("affectflow-synthetic", "champion")
    assert summary["registered"] == f"models:/affectflow-synthetic/{version.version}"
    run = client.get_run(version.run_id)
    assert run.data.tags["dataset_version"] == summary["dataset_version"]
    # Confidence calibrated on the validation speakers; the test split says by how much, with a picture.
    assert 0.05 <= float(run.data.params["temperature"]) <= 20
    assert {"test_ece", "test_ece_calibrated"} <= set(run.data.metrics)
    assert "plots/reliability.png" in {a.path for a in client.list_artifacts(version.run_id, "plots")}
    # The run was open while the model trained: each epoch's loss was logged as the epoch ended.
    losses = client.get_metric_history(version.run_id, "loss")
    assert [m.step for m in losses] == list(range(len(losses))) and len(losses) >= 10
    assert run.info.start_time <= losses[0].timestamp < losses[-1].timestamp <= run.info.end_time

    # Nothing new: the second run reuses every cached feature record and registers a second version.
    records = sorted(home.features.rglob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in records]
    again = train_flow(home=str(home.home), training=TrainConfig(epochs=2), package=False)
    assert again["registered"].endswith("/2")
    assert sorted(home.features.rglob("*.npz")) == records
    assert [p.stat().st_mtime_ns for p in records] == stamps

    # The CLI: evaluate the champion on a batch of speakers it never saw, and predict one clip.
    unseen = write_synthetic_batch(tmp_path / "unseen", clips=36, speakers=3, seed=77, seconds=1.0)
    result = run_cli("evaluate", "--model", "models:/affectflow-synthetic@champion", "--data",
                     str(tmp_path / "unseen"), "--by", "speaker,sex", "--ablate", home=home)
    assert result["n"] == len(unseen)
    assert {"uar", "war", "macro_f1", "ccc_arousal", "ccc_valence"} <= set(result)
    assert result["uar"] > CHANCE
    assert result["speakers_aligned"]  # the model was trained with speaker normalisation
    by_speaker = {row["value"]: row["n"] for row in result["groups"] if row["group"] == "speaker"}
    assert by_speaker == unseen["speaker"].astype(str).value_counts().to_dict()  # no sex column: skipped
    views = {row["view"]: row for row in result["ablation"]}
    assert {"all", "video only", "audio only"} <= set(views)
    assert views["all"]["n"] == len(unseen)
    prediction = run_cli("predict", str(tmp_path / "unseen" / unseen["path"][0]), home=home)
    assert prediction["emotion"] in SYNTH_EMOTIONS
    assert prediction["confidence"] == max(prediction["probabilities"].values())
    assert -1 <= prediction["arousal"] <= 1 and -1 <= prediction["valence"] <= 1
    clips = [str(tmp_path / "unseen" / path) for path in unseen["path"][:2]]
    last = run_cli("predict", *clips, "--dataset", "synthetic", home=home)  # one model load, a line per clip
    assert last["clip"] == clips[1] and last["seconds"] > 0 and last["emotion"] in SYNTH_EMOTIONS
    # --speaker: the home keeps the voice between commands; from its MIN_CLIPS-th clip on, its clips are aligned
    voice = [str(tmp_path / "unseen" / path) for path in unseen.loc[unseen["speaker"] == unseen["speaker"][0], "path"]]
    first = run_cli("predict", *voice[:MIN_CLIPS - 1], "--speaker", "visitor-1", home=home)
    assert first["calibration"] == {"speaker": "visitor-1", "clips": MIN_CLIPS - 1, "aligned": False}
    later = run_cli("predict", *voice[MIN_CLIPS - 1:MIN_CLIPS + 2], "--speaker", "visitor-1", home=home)
    assert later["calibration"] == {"speaker": "visitor-1", "clips": MIN_CLIPS + 2, "aligned": True}
    assert later["emotion"] in SYNTH_EMOTIONS


def test_cross_validation_from_the_cli(home, tmp_path):
    """``train --cv K``: every speaker tested once, mean ± std per metric, a report on disk and in MLflow,
    nothing registered."""
    write_synthetic_batch(home.inbox / "batch-a", clips=36, speakers=6, seed=2, seconds=1.0)
    run_cli("ingest", home=home)
    result = run_cli("train", "--dataset", "synthetic", "--cv", "3", "--epochs", "3", "--seed", "5",
                     "--face-backend", "none", home=home)
    assert result["k"] == 3
    assert result["summary"]["uar"]["folds"] == 3 and result["summary"]["uar"]["std"] >= 0
    assert result["pooled"]["n"] == 36  # every clip predicted once, by a model that never saw its speaker
    report = Path(result["report"])
    assert {"crossval.json", "crossval.md", "predictions.csv", "confusion_matrix.png"} <= {p.name for p in report.iterdir()}
    configure(activate_home(home.home))
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("affectflow-synthetic-crossval").experiment_id])[0]
    assert run.data.metrics["cv_uar_mean"] == pytest.approx(result["summary"]["uar"]["mean"])
    assert run.data.params["k"] == "3" and run.data.params["refit"] == "True"
    assert run.data.params["preprocess_face_backend"] == "none"  # the cache `preprocess --face-backend` filled
    assert client.search_registered_models() == []

    # Another corpus on every training side, and a setting chosen in each fold by its validation speakers.
    write_synthetic_batch(home.inbox / "batch-b", clips=24, speakers=4, seed=3, seconds=1.0, dataset="other")
    run_cli("ingest", home=home)
    mixed = run_cli("train", "--dataset", "synthetic", "--cv", "3", "--epochs", "3", "--seed", "5", "--face-backend",
                    "none", "--with", "other", "--select", "dropout=0.2,0.5", home=home)
    assert mixed["pooled"]["n"] == 36  # only the dataset itself is tested
    report = json.loads(Path(mixed["report"], "crossval.json").read_text())
    alone = json.loads(Path(result["report"], "crossval.json").read_text())
    assert report["trained_with"] == ["other"]
    for fold, before in zip(report["folds"], alone["folds"], strict=True):
        assert (fold["test_speakers"], fold["val_speakers"]) == (before["test_speakers"], before["val_speakers"])
        assert fold["n_train"] == before["n_train"] + 24
        assert fold["selected"] in ("dropout=0.2", "dropout=0.5") and set(fold["val_scores"]) == {"dropout=0.2",
                                                                                                 "dropout=0.5"}
