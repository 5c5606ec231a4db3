"""Weekly safety net: every curated dataset retrains through its own deployment, new batches or not."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from affectflow.config import activate_home
from affectflow.ingest import list_datasets


@flow(name="affectflow-retrain", log_prints=True)
def retrain_flow(home: str | None = None) -> dict[str, str]:
    """Start ``affectflow-train/train-<dataset>`` for each curated dataset (its parameters, its concurrency
    limit: a run already training means this one queues). Datasets without a deployment are listed, not
    trained. Returns dataset -> started flow run id, or why not."""
    logger = get_run_logger()
    started = {}
    for dataset in list_datasets(activate_home(home)):
        try:
            run = run_deployment(f"affectflow-train/train-{dataset}", timeout=0, tags=["weekly-retrain"])
        except ObjectNotFound as err:  # no deployment for this dataset
            started[dataset] = f"not started: no deployment affectflow-train/train-{dataset} ({type(err).__name__})"
        else:
            started[dataset] = str(run.id)
        logger.info("%s: %s", dataset, started[dataset])
    return started


if __name__ == "__main__":
    retrain_flow()
