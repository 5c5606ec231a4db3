"""What waits in quarantine, and how a fixed batch goes back: ``affectflow quarantine list|show|release``.

A quarantined folder is a whole batch that failed, or the rows split off a batch whose other rows were
accepted (``partial.json`` inside says from where). The user fixes it in place (a clip re-encoded, a label
corrected, a row dropped) and releases it: the folder moves back to the inbox under the ingest lock, its old
report kept as ``report.previous.md``, and the next ingest validates it afresh. Clips whose content the store
holds already add no rows there (same content, same labels: a duplicate), so a batch released twice, or a
released half of a split batch, never puts a clip in the dataset twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from affectflow.config import Paths
from affectflow.errors import UserError
from affectflow.ingest import LINK_NAME, PARTIAL, PREVIOUS_REPORT, free_name, ingest_lock
from affectflow.validation import REPORT_JSON, REPORT_MD


class QuarantineError(UserError, LookupError):
    """No such quarantined batch, or one that cannot go back to the inbox."""


@dataclass(frozen=True)
class QuarantinedBatch:
    """One folder of ``quarantine/``: what failed and where it came from."""

    name: str
    folder: Path
    dataset: str | None
    rows: int
    problems: int
    first_problem: str
    since: str
    split_from: str | None  # the submitted batch whose other rows were accepted, for a split batch
    data_docs: str | None

    def to_dict(self) -> dict:
        return {**self.__dict__, "folder": str(self.folder)}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _describe(folder: Path) -> QuarantinedBatch:
    report = _read_json(folder / REPORT_JSON)
    failures = report.get("failures") or []
    first = failures[0] if failures else {}
    where = "file" if first.get("row") is None else f"row {first['row']}"
    accounting = _read_json(folder / PARTIAL)
    since = datetime.fromtimestamp(folder.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return QuarantinedBatch(folder.name, folder, report.get("dataset"), int(report.get("n_rows") or 0),
                            len(failures), f"{where}: {first['reason']}" if first else "no report",
                            since, accounting.get("submitted_batch"), report.get("data_docs"))


def quarantined_batches(paths: Paths) -> list[QuarantinedBatch]:
    """Every quarantined batch, oldest first."""
    if not paths.quarantine.is_dir():
        return []
    folders = [p for p in paths.quarantine.iterdir() if p.is_dir() and not p.is_symlink()]
    return [_describe(folder) for folder in sorted(folders, key=lambda p: (p.stat().st_mtime, p.name))]


def quarantined(name: str, paths: Paths) -> QuarantinedBatch:
    """The quarantined batch ``name`` (a folder name of ``quarantine/``, nothing else)."""
    folder = paths.quarantine / name
    if name in ("", ".", "..") or "/" in name or "\\" in name or folder.is_symlink() or not folder.is_dir():
        names = ", ".join(batch.name for batch in quarantined_batches(paths)) or "none"
        raise QuarantineError(f"no quarantined batch {name!r} in {paths.quarantine} (quarantined: {names})")
    return _describe(folder)


def release(name: str, paths: Paths) -> Path:
    """Move the quarantined batch ``name`` back to the inbox for the next ingest; returns its inbox folder.

    Under the ingest lock, so a running ingest never sees half a move. A refused symlinked batch folder has no
    files to release (its link is kept as evidence): the user puts the real folder in the inbox instead."""
    batch = quarantined(name, paths)
    if (batch.folder / LINK_NAME).is_symlink():
        raise QuarantineError(f"{name} was a symlink to a batch folder, refused unread; there is nothing to release: "
                              "put the batch folder itself in the inbox")
    with ingest_lock(paths):
        target = free_name(paths.inbox, name)
        os.rename(batch.folder, target)
        if (target / REPORT_MD).is_file():
            os.replace(target / REPORT_MD, target / PREVIOUS_REPORT)
        (target / REPORT_JSON).unlink(missing_ok=True)
    return target
