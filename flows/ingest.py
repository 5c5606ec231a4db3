"""Ingest flow (scheduled): validate every inbox batch and accept or quarantine it."""

from __future__ import annotations

from prefect import flow

from affectflow.config import DEFAULT_POLICY, IngestPolicy, activate_home
from tasks.drift import drift_of_accepted
from tasks.ingest import ingested_batches


@flow(name="affectflow-ingest", log_prints=True)
def ingest_flow(home: str | None = None, inbox: str | None = None, policy: IngestPolicy = DEFAULT_POLICY) -> list[dict]:
    """Every batch in ``inbox`` (default ``<home>/inbox``) ends in the curated store or in quarantine; with
    ``policy`` "partial" (the default) a batch whose failures all name rows is split between the two."""
    home = str(activate_home(home).home)
    results = ingested_batches(home, inbox, policy)
    drift_of_accepted(results, home)  # each accepted batch against its champion's data; never fails the ingest
    return results


if __name__ == "__main__":
    ingest_flow()
