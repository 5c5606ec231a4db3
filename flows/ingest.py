"""Ingest flow (scheduled): validate every inbox batch and accept or quarantine it."""

from __future__ import annotations

from prefect import flow

from affectflow.config import activate_home
from tasks.ingest import ingested_batches


@flow(name="affectflow-ingest", log_prints=True)
def ingest_flow(home: str | None = None, inbox: str | None = None) -> list[dict]:
    """Every batch in ``inbox`` (default ``<home>/inbox``) ends in the curated store or in quarantine."""
    return ingested_batches(str(activate_home(home).home), inbox)


if __name__ == "__main__":
    ingest_flow()
