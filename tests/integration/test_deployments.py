"""prefect.yaml: every deployment points at a real flow with parameters it accepts and valid schedules."""

from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_is_runnable(deployment, monkeypatch):
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the project, as on a worker after the pull step
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    accepted = set(flow.parameters.properties)
    assert set(deployment.get("parameters", {})) <= accepted, accepted
    flow.validate_parameters(deployment.get("parameters", {}))  # nested training settings included
    assert deployment["work_pool"]["name"]
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])


def test_every_flow_has_a_deployment():
    entrypoints = {d["entrypoint"] for d in DEPLOYMENTS}
    flows = {f"flows/{p.name}:{name}" for p, name in [(ROOT / "flows" / "ingest.py", "ingest_flow"),
                                                       (ROOT / "flows" / "train.py", "train_flow"),
                                                       (ROOT / "flows" / "pipeline.py", "pipeline_flow"),
                                                       (ROOT / "flows" / "crossval.py", "crossval_flow")]}
    assert flows <= entrypoints


def test_scheduled_and_manual_deployments_exist():
    scheduled = [d["name"] for d in DEPLOYMENTS if d.get("schedules")]
    manual = [d["name"] for d in DEPLOYMENTS if d["entrypoint"].endswith("train_flow") and not d.get("schedules")]
    assert "ingest-inbox" in scheduled and len(manual) >= 4


def test_a_bad_training_setting_is_refused_before_the_run_starts(monkeypatch):
    from prefect.exceptions import ParameterTypeError

    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint("flows/train.py:train_flow")
    assert flow.validate_parameters({"training": {"epochs": 5}})["training"].epochs == 5
    with pytest.raises(ParameterTypeError, match="epochs=0 is out of range"):
        flow.validate_parameters({"dataset": "emodb", "training": {"epochs": 0}})
    with pytest.raises(ParameterTypeError, match="face_backend"):
        flow.validate_parameters({"face_backend": "dlib"})
