"""Ingest flow (scheduled): validate every inbox batch and accept or quarantine it."""

from __future__ import annotations

from prefect import flow

from affectflow.config import DEFAULT_POLICY, IngestPolicy, activate_home
from tasks.ingest import ingested_batches


@flow(name="affectflow-ingest", log_prints=True)
def ingest_flow(home: str | None = None, inbox: str | None = None, policy: IngestPolicy = DEFAULT_POLICY) -> list[dict]:
    """Every batch in ``inbox`` (default ``<home>/inbox``) ends in the curated store or in quarantine; with
    ``policy`` "partial" (the default) a batch whose failures all name rows is split between the two."""
    return ingested_batches(str(activate_home(home).home), inbox, policy)


if __name__ == "__main__":
    ingest_flow()
