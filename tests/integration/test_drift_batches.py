"""Drift per accepted batch for real: synthetic batches ingested into a home, profiled from real decoding and the
feature cache, compared with scipy; a champion trained (one epoch) becomes the reference; the ingest flow reports a batch of
louder, higher voices and one without faces as drifted, each with the ``affectflow.batch.drifted`` event."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from affectflow.config import TrainConfig, activate_home
from affectflow.drift import REPORT_JSON, REPORT_MD, batch_drift
from affectflow.ingest import ingest_inbox
from affectflow.synth import Shift, write_synthetic_batch

pytestmark = pytest.mark.slow

BATCH = {"clips": 36, "speakers": 6, "seconds": 1.0, "size": 128}  # 128 px: big enough for dlib to find faces
LENIENT = TrainConfig(epochs=1, min_epochs=0, hidden_units=16, promote_min_uar=0.0, promote_min_ccc=-1.0)


def _ingest(home, name: str, seed: int, **options) -> None:
    write_synthetic_batch(home.inbox / name, seed=seed, **{**BATCH, **options})
    (result,) = ingest_inbox(home)
    assert result.status == "accepted"


def _drifted_events(batch: str, timeout: float = 30.0) -> list[dict]:
    """The ``affectflow.batch.drifted`` events of ``batch`` the test API holds (events arrive within seconds)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        while True:
            response = prefect.request("POST", "/events/filter", json={
                "filter": {"event": {"name": ["affectflow.batch.drifted"]}}, "limit": 50})
            events = [e for e in response.json()["events"] if e["payload"]["batch"] == batch]
            if events or time.monotonic() > deadline:
                return events
            time.sleep(1)


def test_drift_against_earlier_clips_then_against_the_champions_data(prefect_harness, home):
    from cli.main import main
    from flows.ingest import ingest_flow
    from flows.train import train_flow

    activate_home(home.home)
    _ingest(home, "first", seed=1)
    first = batch_drift("synthetic", None, home)  # the newest batch by default
    assert (first.batch, first.reference["clips"], first.features, first.drifted) == ("first", 0, [], False)

    # Same generator, other people: new speakers are no drift. No champion: every earlier clip is the reference.
    _ingest(home, "same", seed=2)
    same = batch_drift("synthetic", "same", home)
    assert same.reference["kind"] == "earlier" and same.reference["clips"] == 36
    assert not same.drifted and "speaker_balance" not in same.drifted_features, same.markdown()
    assert max(same.group_shares.values()) < 0.5
    assert same.predictions == {"skipped": "the dataset has no champion"}
    stored = json.loads((home.datasets / "synthetic" / "same" / REPORT_JSON).read_text())
    assert stored["drifted"] is False and stored["reference"]["kind"] == "earlier"
    assert {"name", "kind", "test", "statistic", "p_value", "drifted", "reference_mean", "batch_mean"} <= set(
        stored["features"][0])
    assert (home.datasets / "synthetic" / "same" / REPORT_MD).read_text().startswith("# Drift of synthetic batch same")

    trained = train_flow(home=str(home.home), training=LENIENT, package=False)
    assert trained["promoted"]

    # Louder, higher voices, through the ingest flow: the voice features drift against the champion's training
    # data (both batches before), the batch drifts and the flow emits the event.
    write_synthetic_batch(home.inbox / "loud", seed=3, **BATCH, shift=Shift(gain_db=10.0, pitch_semitones=7.0))
    assert ingest_flow(home=str(home.home))[0]["status"] == "accepted"
    loud = json.loads((home.datasets / "synthetic" / "loud" / REPORT_JSON).read_text())
    assert loud["reference"] == {"kind": "champion", "dataset_version": trained["dataset_version"], "clips": 72,
                                 "note": f"the training data of the champion {trained['registered'][8:]}"}
    assert {"loudness_dbfs", "pitch_median_hz"} <= set(loud["drifted_features"]), loud
    assert loud["drifted"] and "voice" in loud["drifted_groups"] and "face" not in loud["drifted_groups"], loud
    assert loud["predictions"]["test_clips"] > 0 and loud["predictions"]["test"] == "chi-square"
    assert sum(loud["predictions"]["batch_shares"].values()) == pytest.approx(1.0, abs=1e-4)

    # The same generator without faces: the face group drifts, the voice does not.
    write_synthetic_batch(home.inbox / "noface", seed=4, **BATCH, shift=Shift(faces=False))
    assert ingest_flow(home=str(home.home))[0]["status"] == "accepted"
    noface = json.loads((home.datasets / "synthetic" / "noface" / REPORT_JSON).read_text())
    assert noface["drifted_groups"] == ["face"] and "face_share" in noface["drifted_features"], noface

    for batch, report in (("loud", loud), ("noface", noface)):
        (event,) = _drifted_events(batch)
        assert event["resource"]["prefect.resource.id"] == "affectflow.dataset.synthetic"
        assert event["payload"]["drifted_features"] == report["drifted_features"]
        assert event["payload"]["drifted_groups"] == report["drifted_groups"]
        assert event["payload"]["report"].endswith(f"{batch}/drift.md")
    assert not _drifted_events("same", timeout=0)  # measured by hand, never by the flow: no event

    # The command: the batch the champion was trained on is compared with what came before it.
    # (not capsys: Prefect's log handler would keep its stream, closed after this test)
    with redirect_stdout(io.StringIO()) as out:
        main(["--home", str(home.home), "drift", "--dataset", "synthetic", "--batch", "same"])
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (summary["batch"], summary["reference"]["kind"], summary["reference"]["clips"]) == ("same", "champion", 36)
    assert "trained on this batch too" in summary["reference"]["note"]


def test_a_failing_drift_step_leaves_the_batch_accepted(prefect_harness, home):
    from flows.ingest import ingest_flow

    small = {"clips": 6, "speakers": 1, "seconds": 0.6, "size": 48}
    write_synthetic_batch(home.inbox / "one", seed=1, **small)
    assert ingest_flow(home=str(home.home))[0]["status"] == "accepted"
    Path(home.drift).write_text("not a folder")  # where the profiles go: every drift measurement now fails
    write_synthetic_batch(home.inbox / "two", seed=2, **small)
    state = ingest_flow(home=str(home.home), return_state=True)
    assert state.is_completed()
    assert [r["status"] for r in state.result()] == ["accepted"]
    assert not (home.datasets / "synthetic" / "two" / REPORT_JSON).exists()
