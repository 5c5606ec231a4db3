"""Where a model's training data came from, read from the curated store: the manifest (and a digest of its
bytes), and per batch of it the validation report, the GX Data Docs page and result id of its validation, its
drift report, and whether it arrived after the previous model's data. ``registry.live_training`` logs this to
the training run; no MLflow here.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from affectflow.config import Paths
from affectflow.ingest import MANIFEST
from affectflow.tables import markdown_table
from affectflow.validation import REPORT_JSON, REPORT_MD

DRIFT_FILES: tuple[str, ...] = ("drift.md", "drift.json")  # what the drift check leaves in an accepted batch
NO_DRIFT = "no drift report"
DIGEST_CHARS = 32  # MLflow keeps at most 36 characters of a dataset digest


@dataclass(frozen=True)
class TrainingData:
    """One read of a dataset's manifest: its rows and the sha256 of the very bytes they were parsed from."""

    dataset: str
    version: str
    manifest: Path
    sha256: str
    rows: pd.DataFrame

    @property
    def digest(self) -> str:
        return self.sha256[:DIGEST_CHARS]

    @property
    def data_through(self) -> datetime:
        """When the newest batch of this data was accepted: the next model's "since"."""
        return self.rows["ingested_at"].max().to_pydatetime()

    def batches(self, since: datetime | None) -> list[dict]:
        """One row per batch of the data, oldest first: clips, ``ingested_at``, the validation report,
        ``data_docs`` and ``validation_result`` from its ``report.json`` (None where absent), its drift report
        files, and ``new``: accepted after ``since`` (every batch when ``since`` is None: no earlier model)."""
        store = self.manifest.parent
        rows = []
        for batch, clips in self.rows.groupby("batch", sort=False):
            folder = store / batch
            report = folder / REPORT_JSON
            validation = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
            ingested = clips["ingested_at"].min().to_pydatetime()
            rows.append({"batch": batch, "clips": len(clips), "ingested_at": ingested.isoformat(),
                         "new": since is None or ingested > since,
                         "report": str(folder / REPORT_MD) if (folder / REPORT_MD).is_file() else None,
                         "data_docs": validation.get("data_docs"),
                         "validation_result": validation.get("validation_result"),
                         "drift": [str(folder / name) for name in DRIFT_FILES if (folder / name).is_file()]})
        return sorted(rows, key=lambda row: (row["ingested_at"], row["batch"]))


def training_data(dataset: str, version: str, paths: Paths) -> TrainingData:
    """The dataset's manifest as it is now, hashed and parsed from one read (a concurrent ingest swaps the file
    whole, so digest and rows always agree)."""
    manifest = paths.datasets / dataset / MANIFEST
    data = manifest.read_bytes()
    return TrainingData(dataset, version, manifest, hashlib.sha256(data).hexdigest(),
                        pd.read_parquet(io.BytesIO(data)))


def lineage_markdown(batches: list[dict], previous: str | None) -> str:
    """The batch table of a training run, for people reading its artifacts."""
    since = f"since {previous}" if previous else "since the previous model (none: every batch)"
    table = [{**row, "new": "yes" if row["new"] else "no", "drift": ", ".join(row["drift"]) or NO_DRIFT}
             for row in batches]
    return (f"# Training data lineage\n\n`new`: accepted {since}; drift reports are logged for those.\n\n"
            + markdown_table(table, ["batch", "clips", "ingested_at", "new", "report", "data_docs",
                                     "validation_result", "drift"]) + "\n")
