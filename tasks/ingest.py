"""Ingestion task: every inbox batch validated, then accepted or quarantined."""

from __future__ import annotations

from dataclasses import asdict

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from affectflow.config import get_paths
from affectflow.ingest import ingest_inbox


@task(name="ingested-batches")
def ingested_batches(home: str) -> list[dict]:
    """Ingest the inbox of ``home``; quarantine reports become artifacts."""
    logger = get_run_logger()
    results = [asdict(r) for r in ingest_inbox(get_paths(home), progress=lambda msg: logger.info(msg))]
    for result in results:
        logger.info("batch %s: %s (%s clips, %s new)", result["batch"], result["status"], result["n_clips"],
                    result["n_new"])
        if result["status"] == "quarantined":
            create_markdown_artifact(key="quarantine-report", markdown=open(result["report"]).read())
    if results:
        create_table_artifact(key="ingest-results", table=[{k: str(v) for k, v in r.items()} for r in results])
    return results
