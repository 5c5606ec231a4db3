"""Ingestion task: every inbox batch validated, then accepted or quarantined, each outcome an event."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from affectflow.config import DEFAULT_POLICY, IngestPolicy, get_paths
from affectflow.ingest import IngestResult, ingest_inbox
from affectflow.tables import markdown_table
from affectflow.validation import REPORT_MD
from tasks.artifacts import artifact_key
from tasks.events import emit
from tasks.policies import STORAGE_RETRIES


def _announce(result: IngestResult) -> None:
    """The batch's event (what training triggers and notifications hang on) and, for what was quarantined (the
    batch, or the rows split off it), ``affectflow.batch.quarantined`` and its report."""
    payload = {"batch": result.batch, "clips": result.n_clips, "new_clips": result.n_new,
               "dataset_version": result.dataset_version, "reasons": result.reasons,
               "quarantined_rows": result.n_quarantined, "quarantine": str(result.quarantine or "") or None}
    emit(f"affectflow.batch.{result.status}", result.dataset, payload)
    quarantine = result.location if result.status == "quarantined" else result.quarantine
    if quarantine is None:
        return
    if result.status != "quarantined":
        emit("affectflow.batch.quarantined", result.dataset, {**payload, "clips": result.n_quarantined,
                                                               "new_clips": 0, "dataset_version": None})
    create_markdown_artifact(
        key=artifact_key(result.dataset or "unknown", "quarantine-report"),
        markdown=(Path(quarantine) / REPORT_MD).read_text(encoding="utf-8"),
        description=f"What of batch {result.batch} was quarantined and why; its files are in {quarantine}")


def _summary(results: list[IngestResult]) -> str:
    """The ingest's outcome per batch, each with a link to the Data Docs page of its validation."""
    rows = [{"batch": r.batch, "status": r.status, "clips": r.n_clips, "new": r.n_new,
             "quarantined rows": r.n_quarantined, "now in": str(r.location),
             "Data Docs": f"[open]({Path(r.data_docs).as_uri()})" if r.data_docs else "none"} for r in results]
    return "# Ingest results\n\n" + markdown_table(rows) + "\n"


# Safe to retry: an interrupted ingest is completed from its journal before anything else happens.
@task(name="ingested-batches", **STORAGE_RETRIES)
def ingested_batches(home: str, inbox: str | None = None, policy: IngestPolicy = DEFAULT_POLICY) -> list[dict]:
    """Ingest ``inbox`` (default: the home's) under ``policy``; each batch emits
    ``affectflow.batch.accepted|duplicate|quarantined`` (a split batch both accepted and quarantined)."""
    logger = get_run_logger()

    def progress(done: int, total: int, result: IngestResult) -> None:
        logger.info("[%d/%d] batch %s: %s (%d clips, %d new, %d rows quarantined) %s", done, total, result.batch,
                    result.status, result.n_clips, result.n_new, result.n_quarantined, "; ".join(result.reasons))
        _announce(result)

    results = ingest_inbox(get_paths(home), progress=progress, inbox=Path(inbox) if inbox else None,
                           waiting=logger.info, policy=policy)  # another ingest of the home runs: this one waits for it
    if results:
        create_markdown_artifact(key="ingest-results", markdown=_summary(results),
                                 description="Every batch of this ingest: accepted, quarantined or split between "
                                             "the two; its GX Data Docs.")
    return [r.to_dict() for r in results]
