"""MLflow on a temporary sqlite store: logging, registration, champion alias, loading back, promotion."""

from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from affectflow.arrays import Arrays
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.evaluation import evaluate
from affectflow.experiment import Experiment
from affectflow.predict import ModelCard
from affectflow.promotion import challenge
from affectflow.registry import champion, configure, load_predictor, log_training
from affectflow.reports import RunReport, training_report
from affectflow.training import train

LENIENT = TrainConfig(promote_min_uar=0.0, promote_min_ccc=-1.0)  # no floors: these tests are about the comparison

PRE = PreprocessConfig(num_frames=4, frame_size=32, audio_seconds=0.5)
CLASSES = ("anger", "happiness", "sadness")


def arrays(n: int, seed: int) -> Arrays:
    """Learnable toy data: the class sets the MFCC mean, affect follows the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    mfcc = rng.normal(size=(n, PRE.audio_steps, PRE.n_mfcc)).astype("float32") + labels[:, None, None]
    inputs = {"frames": rng.integers(0, 256, (n, 4, 32, 32, 3), dtype=np.uint8), "mfcc": mfcc,
              "video_mask": np.ones((n, 1), "float32"), "audio_mask": np.ones((n, 1), "float32")}
    affect = np.stack([labels - 1.0, 1.0 - labels], axis=1).astype("float32") * 0.5
    return Arrays(inputs, labels, affect)


@pytest.fixture(scope="module")
def experiment() -> Experiment:
    """One small trained model for the module's tests (they read it, never change it)."""
    config = replace(TrainConfig(), epochs=3, hidden_units=16, batch_size=8)
    result = train(arrays(24, 0), arrays(12, 1), CLASSES, config, progress=lambda _: None)
    test = arrays(12, 2)
    result.metrics, result.confusion = evaluate(result.model, test, CLASSES)
    return Experiment(result, CLASSES, pd.DataFrame(), {"uar": 0.5}, test, PRE)


def report_of(result, folder):
    return training_report(result.history, result.metrics, result.confusion, CLASSES, folder)


def test_log_register_alias_and_load_back(home, experiment, tmp_path):
    configure(home)
    card = ModelCard(CLASSES, PRE, "multitask", dataset_version="v-test")
    sample = {k: v[:2] for k, v in experiment.test.inputs.items()}
    registered = log_training(experiment.result, card, TrainConfig(), "toy", sample, experiment.val_metrics,
                              report_of(experiment.result, tmp_path))
    assert registered.name == "affectflow-toy" and registered.version == "1"
    assert str(home.mlflow_db) in mlflow.get_tracking_uri()

    run = MlflowClient().get_run(registered.run_id)
    assert run.data.params["dataset_version"] == "v-test"
    assert "test_uar" in run.data.metrics and "val_uar" in run.data.metrics
    artifacts = {a.path for a in MlflowClient().list_artifacts(registered.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/training_curves.png"} <= artifacts
    reports = {a.path for a in MlflowClient().list_artifacts(registered.run_id, "reports")}
    assert "reports/test_metrics.md" in reports
    assert str(home.mlflow_artifacts) in run.info.artifact_uri  # artifacts stay inside the home

    decision = challenge(registered, experiment, LENIENT)
    assert decision.promoted and champion("affectflow-toy").version == "1"

    predictor = load_predictor("models:/affectflow-toy@champion")
    assert predictor.card.classes == CLASSES and predictor.card.model_version == "affectflow-toy/1"
    assert predictor.card.preprocess == PRE
    expected = experiment.result.model(sample, training=False)
    got = predictor.model(sample, training=False)
    np.testing.assert_allclose(np.asarray(got["emotion"]), np.asarray(expected["emotion"]), atol=1e-5)


def test_weaker_challenger_does_not_take_the_alias(home, experiment):
    configure(home)
    card = ModelCard(CLASSES, PRE, "multitask")
    sample = {k: v[:2] for k, v in experiment.test.inputs.items()}
    first = log_training(experiment.result, card, TrainConfig(), "toy", sample, {}, RunReport())
    challenge(first, experiment, LENIENT)
    # an untrained challenger: same architecture, random weights, scored on the same clips
    weak = train(arrays(6, 3), arrays(3, 4), CLASSES, replace(TrainConfig(), epochs=1, hidden_units=16),
                 progress=lambda _: None)
    weak.metrics, weak.confusion = evaluate(weak.model, experiment.test, CLASSES)
    second = log_training(weak, card, TrainConfig(), "toy", sample, {}, RunReport())
    weak_experiment = Experiment(weak, CLASSES, pd.DataFrame(), {}, experiment.test, PRE)
    decision = challenge(second, weak_experiment, LENIENT)
    if decision.challenger_score < decision.champion_score:
        assert not decision.promoted and champion("affectflow-toy").version == first.version
    else:  # the one-epoch model happened to be as good: then it must hold the alias
        assert decision.promoted and champion("affectflow-toy").version == second.version


def test_the_gate_never_promotes_out_of_order(home, experiment):
    """Two trainings overlapped and the later one was decided first: the earlier version does not replace it."""
    configure(home)
    card = ModelCard(CLASSES, PRE, "multitask")
    sample = {k: v[:2] for k, v in experiment.test.inputs.items()}
    earlier = log_training(experiment.result, card, TrainConfig(), "toy", sample, {}, RunReport())
    later = log_training(experiment.result, card, TrainConfig(), "toy", sample, {}, RunReport())
    assert challenge(later, experiment, LENIENT).promoted
    decision = challenge(earlier, experiment, LENIENT)  # as good (the same model), but registered before
    assert not decision.promoted and "out of order" in decision.reason
    assert champion("affectflow-toy").version == later.version
    assert MlflowClient().get_run(earlier.run_id).data.tags["promotion"] == "rejected"


def test_one_champion_decision_per_dataset_at_a_time(home, tmp_path):
    """A second decision waits for the first to release the home's lock on that dataset."""
    import subprocess
    import sys
    import time

    from affectflow.promotion import decision_lock

    trace = tmp_path / "trace"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from affectflow.config import get_paths\n"
        "from affectflow.promotion import decision_lock\n"
        "with decision_lock('toy', get_paths(sys.argv[1])):\n"
        "    Path(sys.argv[2]).write_text('held\\n'); time.sleep(3)\n"
        "    Path(sys.argv[2]).write_text('held\\nreleased\\n')\n"), str(home.home), str(trace)])
    try:
        while not trace.exists():
            assert holder.poll() is None, "the holder exited before taking the lock"
            time.sleep(0.05)
        with decision_lock("toy", home):
            assert trace.read_text() == "held\nreleased\n"  # got the lock only after the holder was done
    finally:
        holder.wait(timeout=60)


def test_configure_follows_the_home_but_keeps_a_users_server(tmp_path, monkeypatch):
    from affectflow.config import get_paths

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure(get_paths(tmp_path / "a").ensure())
    configure(get_paths(tmp_path / "b").ensure())  # MLflow exported home a's URI; home b must replace it
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'server.db'}")
    assert get_paths(tmp_path / "c").mlflow_tracking_uri.endswith("server.db")


def test_the_gate_keeps_models_below_the_floor_out_and_a_person_can_override_it(home, experiment):
    from affectflow.promotion import previous_champion, promote_version

    configure(home)
    client = MlflowClient()
    card = ModelCard(CLASSES, PRE, "multitask", dataset="toy")
    sample = {k: v[:2] for k, v in experiment.test.inputs.items()}
    first = log_training(experiment.result, card, TrainConfig(), "toy", sample, {}, RunReport())
    assert "toy" in client.get_model_version("affectflow-toy", "1").description  # the version says what it is

    strict = TrainConfig(promote_min_uar=float(len(CLASSES)))  # UAR >= 1.0: nothing real clears it
    decision = challenge(first, experiment, strict)
    assert not decision.promoted and "gate not cleared" in decision.reason and "uar" in decision.reason
    assert champion("affectflow-toy") is None
    assert str(client.get_model_version_by_alias("affectflow-toy", "challenger").version) == "1"
    run = client.get_run(first.run_id)
    assert run.data.tags["promotion"] == "rejected" and run.data.metrics["gate_min_uar"] == pytest.approx(1.0)

    promote_version("affectflow-toy", "1", "reviewed by a person")  # the override
    assert champion("affectflow-toy").version == "1"
    tags = client.get_model_version("affectflow-toy", "1").tags
    assert tags["promoted_by"] == "person" and tags["promotion_reason"] == "reviewed by a person"

    second = log_training(experiment.result, card, TrainConfig(), "toy", sample, {}, RunReport())
    assert challenge(second, experiment, LENIENT).promoted  # the same model scores the same: >= passes
    assert champion("affectflow-toy").version == "2"
    assert client.get_run(second.run_id).data.metrics["promotion_champion_score"] == pytest.approx(
        client.get_run(second.run_id).data.metrics["promotion_score"])
    assert previous_champion("affectflow-toy") == "1"  # what `affectflow rollback` gives the alias back to
