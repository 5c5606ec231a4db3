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


def test_every_flow_has_a_deployment_with_a_description():
    entrypoints = {d["entrypoint"] for d in DEPLOYMENTS}
    # flows/pipeline.py is the one-machine demo (ingest then train in one run): on servers, two deployments.
    assert {"flows/ingest.py:ingest_flow", "flows/train.py:train_flow", "flows/crossval.py:crossval_flow",
            "flows/retrain.py:retrain_flow"} <= entrypoints
    assert all(d.get("description") for d in DEPLOYMENTS)


def test_ingest_is_scheduled_and_training_is_triggered_by_its_events():
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    scheduled = {d["name"] for d in DEPLOYMENTS if d.get("schedules")}
    assert {"ingest-inbox", "weekly-retrain"} <= scheduled
    training = [d for d in DEPLOYMENTS if d["entrypoint"] == "flows/train.py:train_flow"
                and d["work_pool"]["name"] == "affectflow"]
    assert len(training) >= 5
    for deployment in training:
        dataset = deployment["parameters"]["dataset"]
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        [trigger] = [DeploymentEventTrigger(**t) for t in deployment["triggers"]]
        assert trigger.match.model_dump() == {"prefect.resource.id": f"affectflow.dataset.{dataset}"}
        assert trigger.expect == {"affectflow.batch.accepted"} and trigger.posture == "Reactive"
        assert trigger.within.total_seconds() == trigger.schedule_after.total_seconds() > 0  # debounced
        assert trigger.parameters == {"dataset": "{{ event.payload.dataset }}"}


def test_the_gpu_pool_and_the_automations_are_valid():
    from prefect.events.schemas.automations import AutomationCore
    from prefect.server.schemas.actions import validate_base_job_template

    from affectflow.servers import OPS_DIR

    template = yaml.safe_load((OPS_DIR / "pools" / "affectflow-gpu.json").read_text())
    validate_base_job_template(template)
    assert template["variables"]["properties"]["env"]["default"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert any(d["work_pool"]["name"] == "affectflow-gpu" for d in DEPLOYMENTS)
    for spec in (OPS_DIR / "automations").glob("*.yaml"):
        AutomationCore(**yaml.safe_load(spec.read_text()))


def test_a_bad_training_setting_is_refused_before_the_run_starts(monkeypatch):
    from prefect.exceptions import ParameterTypeError

    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint("flows/train.py:train_flow")
    assert flow.validate_parameters({"training": {"epochs": 5}})["training"].epochs == 5
    with pytest.raises(ParameterTypeError, match="epochs=0 is out of range"):
        flow.validate_parameters({"dataset": "emodb", "training": {"epochs": 0}})
    with pytest.raises(ParameterTypeError, match="face_backend"):
        flow.validate_parameters({"face_backend": "dlib"})


class _NoAPI:
    """A template that needs the API (``{{ prefect.blocks.* }}``) fails the offline check instead of silently
    starting a temporary Prefect server."""

    def __getattr__(self, name: str):
        raise RuntimeError("the template needs a Prefect API")


def _rendered(worker_type: str, template: dict, values: dict):
    """What the Prefect server checks on `work-pool create`, then what the worker does with a flow run's job
    variables (the server accepts templates a worker later refuses, e.g. a Kubernetes Job without
    ``restartPolicy``: both checks are needed)."""
    import asyncio

    from prefect.server.schemas.actions import validate_base_job_template
    from prefect.utilities.schema_tools import validate
    from prefect_docker.worker import DockerWorker
    from prefect_kubernetes.worker import KubernetesWorker

    worker = {"kubernetes": KubernetesWorker, "docker": DockerWorker}[worker_type]
    validate_base_job_template(template)
    schema = template["variables"]
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    validate({**defaults, **values}, schema, raise_on_error=True, preprocess=True, ignore_required=False,
             allow_none_with_default=True)
    assert set(template["job_configuration"]) <= set(worker.job_configuration.model_fields)  # no silent typos
    return asyncio.run(worker.job_configuration.from_template_and_values(template, values, client=_NoAPI()))


@pytest.mark.parametrize("worker_type", ["kubernetes", "docker"])
def test_each_documented_job_template_is_valid_for_its_worker(worker_type):
    import json

    from affectflow.servers import OPS_DIR

    template = json.loads((OPS_DIR / "pools" / f"{worker_type}.json").read_text())
    values = {"image": "registry.example/affectflow:0.1.0", "env": {"CUDA_VISIBLE_DEVICES": "0"}}
    if worker_type == "kubernetes":
        values["gpu_count"] = 1
    config = _rendered(worker_type, template, values)
    assert config.env["AFFECTFLOW_HOME"] == "/data/affectflow" and config.env["CUDA_VISIBLE_DEVICES"] == "0"
    if worker_type == "kubernetes":
        container = config.job_manifest["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == values["image"] and container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["volumeMounts"][0]["mountPath"] == "/data/affectflow"
        broken = json.loads(json.dumps(template))
        del broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["restartPolicy"]
        with pytest.raises(ValueError, match="restartPolicy"):  # pydantic's ValidationError is a ValueError
            _rendered(worker_type, broken, values)
    else:
        assert config.image == values["image"] and config.volumes == ["/srv/affectflow:/data/affectflow"]
