"""Ingestion task: every inbox batch validated, then accepted or quarantined."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from affectflow.config import get_paths
from affectflow.ingest import IngestResult, ingest_inbox


@task(name="ingested-batches")
def ingested_batches(home: str, inbox: str | None = None) -> list[dict]:
    """Ingest ``inbox`` (default: the home's); quarantine reports become artifacts."""
    logger = get_run_logger()

    def progress(done: int, total: int, result: IngestResult) -> None:
        logger.info("[%d/%d] batch %s: %s (%d clips, %d new) %s", done, total, result.batch, result.status,
                    result.n_clips, result.n_new, "; ".join(result.reasons))

    results = ingest_inbox(get_paths(home), progress=progress, inbox=Path(inbox) if inbox else None)
    for result in results:
        if result.status == "quarantined":
            create_markdown_artifact(key="quarantine-report", markdown=Path(result.report).read_text())
    if results:
        create_table_artifact(key="ingest-results",
                              table=[{k: str(v) for k, v in r.to_dict().items()} for r in results])
    return [r.to_dict() for r in results]
