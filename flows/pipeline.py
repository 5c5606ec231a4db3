"""The whole pipeline in one run, for one machine without servers (``affectflow demo``): ingest, then train.

On servers, the same work is two deployments: the scheduled ingest, and training triggered by its
``affectflow.batch.accepted`` events (prefect.yaml, docs/operations.md).
"""

from __future__ import annotations

from prefect import flow

from affectflow.config import TrainConfig, activate_home
from flows.ingest import ingest_flow
from flows.train import train_flow


@flow(name="affectflow-pipeline", log_prints=True)
def pipeline_flow(dataset: str = "synthetic", training: TrainConfig = TrainConfig(), home: str | None = None,
                  dask: str | None = None) -> dict:
    """Ingest, then train ``dataset`` (also when nothing new arrived: features come from the cache);
    ``dask`` as in the train flow."""
    paths = activate_home(home)
    batches = ingest_flow(str(paths.home))
    summary = train_flow(dataset=dataset, training=training, home=str(paths.home), dask=dask)
    return {"batches": batches, **summary}


if __name__ == "__main__":
    pipeline_flow()
