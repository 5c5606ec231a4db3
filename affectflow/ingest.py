"""Batches move from the inbox to the curated store or to quarantine, and nothing is ever lost.

A batch folder lives in exactly one place: ``inbox/<batch>``, ``quarantine/<batch>`` (failed
validation; ``report.md`` and ``report.json`` inside) or ``datasets/<dataset>/<batch>`` (passed).
Each move is one ``os.rename`` of the whole folder (atomic on one filesystem, so the home must be on
one). Before a passing batch moves it gets ``ingest.json``, the journal of its clips and their
content hashes; after the move the dataset's append-only ``manifest.parquet`` is rewritten atomically.
A kill between the two leaves a store folder whose journal names clips absent from the manifest:
every later ingest completes it first. Each clip hash enters the manifest once; a batch whose clips
are all known already is a "duplicate": its folder is still kept in the store (under a suffixed name
if needed), but it adds no rows. Names never overwrite: a taken name gets ``-2``, ``-3``, ...

Partial acceptance (policy ``partial``, the default): when every failure of a batch names a row (a clip that
does not decode, a label out of the vocabulary, a repeated path, a label conflict), those rows and their media go
to ``quarantine/<batch>/`` (their own ``labels.csv``, the report renumbered to it, ``partial.json``) and the rest is
accepted; a failure of the whole file (unreadable CSV, a missing column, a stray symlink) or of every row
quarantines the batch whole, as does policy ``whole`` for any failure. A split is planned first
(``.split-plan.json`` in the batch, written atomically), then carried out by idempotent moves, so a run killed
half-way is completed by the next one; each input file ends in exactly one folder. ``partial.json`` in both
halves accounts for every submitted row (its number in the submitted CSV, where it went).
``release_quarantined`` puts a quarantined batch back in the inbox once fixed.

Label conflicts: a clip has one label. A row whose clip content (sha256) is already in the dataset with another
speaker, emotion, arousal or valence, or that repeats the content of an earlier row of its batch with other
labels, is a conflict: a row-level failure like any other (policy above); the report names each such row with
both labellings and where the other one is. Nothing in the store changes; correct or drop the rows and
put the batch back in the inbox. Same content with the same labels stays a duplicate (kept, adds no rows).

The store keeps real files only: a batch folder that is a symlink is refused without reading anything through
it (``quarantine/<batch>/`` gets the report and the link itself, as ``batch.symlink``), and a batch holding a
symlink fails validation.

Concurrent ingests of one home: ``ingest_inbox`` runs under an exclusive lock (``<home>/.ingest-run.lock``, which
names its holder); a second run waits for the first, then finds what is left. Moves and manifest writes take
a second lock (``.ingest.lock``), so ``ingest_batch`` called on its own is safe too.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import pandas as pd

from affectflow.cache import file_sha256
from affectflow.config import DEFAULT_POLICY, POLICIES, IngestPolicy, Paths
from affectflow.errors import UserError
from affectflow.labels import LABELS_FILENAME
from affectflow.storage import file_lock, write_atomic
from affectflow.validation import REPORT_MD, Failure, ValidationReport, read_labels, validate_batch

JOURNAL = "ingest.json"
MANIFEST = "manifest.parquet"
RUN_LOCK = ".ingest-run.lock"
SPLIT_PLAN = ".split-plan.json"  # a split in progress (kill-safe: the next run completes it)
PARTIAL = "partial.json"  # the accounting of a split batch, in both of its halves
PREVIOUS_REPORT = "report.previous.md"  # a released batch keeps the report that quarantined it
LINK_NAME = "batch.symlink"  # where a refused symlinked batch folder's link is kept in quarantine
LABEL_COLUMNS: tuple[str, ...] = ("speaker", "emotion", "arousal", "valence")  # one labelling per clip content
MANIFEST_COLUMNS: tuple[str, ...] = ("clip_hash", "batch", "path", "speaker", "emotion", "arousal", "valence",
                                     "intensity", "split", "ingested_at")
NUMBER_COLUMNS: tuple[str, ...] = ("arousal", "valence", "intensity")
VERSION_COLUMNS: tuple[str, ...] = ("clip_hash", "speaker", "emotion", "arousal", "valence")

Status = Literal["accepted", "quarantined", "duplicate"]
Progress = Callable[[int, int, "IngestResult"], None]
Say = Callable[[str], None]


class UnknownDatasetError(UserError, LookupError):
    """No manifest exists for the dataset asked for; the message lists the ones that do."""


@dataclass(frozen=True)
class IngestResult:
    """What happened to one batch and where its folder is now (``location``). A split batch (partial acceptance)
    is ``accepted`` (or ``duplicate``) for its good rows, its other rows counted in ``n_quarantined`` and kept
    in ``quarantine``."""

    batch: str
    status: Status
    dataset: str | None
    n_clips: int
    n_new: int
    dataset_version: str | None
    report: Path
    location: Path
    reasons: list[str] = field(default_factory=list)
    n_quarantined: int = 0
    quarantine: Path | None = None
    data_docs: str | None = None  # the GX Data Docs page of the batch's validation

    def to_dict(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


@contextmanager
def ingest_lock(paths: Paths) -> Iterator[None]:
    """One mover per home at a time: renames and manifest rewrites are read-modify-write."""
    with file_lock(paths.home / ".ingest.lock"):
        yield


@contextmanager
def _ingest_run(paths: Paths, waiting: Say | None = None) -> Iterator[None]:
    """One ``ingest_inbox`` per home at a time; a second one says whom it waits for, then waits. The lock is
    the kernel's (``flock``): a killed holder releases it, and the holder line it leaves is replaced."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.home / RUN_LOCK, "a+") as handle:  # "a+": waiting never empties the holder line
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process"
            if waiting is not None:
                waiting(f"another ingest of {paths.home} is running ({holder}): waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_name(parent: Path, name: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    candidate, suffix = parent / name, 2
    while candidate.exists() or candidate.is_symlink():
        candidate, suffix = parent / f"{name}-{suffix}", suffix + 1
    return candidate


def _number(value: object) -> float | None:
    """A validated label number (text in the CSV); empty cells and ``nan`` become None."""
    number = float(value) if isinstance(value, str) else math.nan
    return None if math.isnan(number) else number


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _clip_records(batch_dir: Path, labels: pd.DataFrame) -> list[dict]:
    """One record per labels row that passed validation, with the clip's content hash and its CSV row
    (``row``: for reports; the journal leaves it out)."""
    return [{"row": int(row), "path": record["path"], "clip_hash": file_sha256(batch_dir / record["path"]),
             "speaker": record["speaker"], "emotion": record["emotion"],
             **{name: _number(record.get(name)) for name in NUMBER_COLUMNS}, "split": _text(record.get("split"))}
            for row, record in zip(labels.index, labels.to_dict("records"), strict=True)]


def _journaled(clip: dict) -> dict:
    return {key: value for key, value in clip.items() if key != "row"}


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(dict.fromkeys(NUMBER_COLUMNS, "float64"))
    frame["ingested_at"] = pd.to_datetime(frame["ingested_at"], utc=True, format="ISO8601")
    return frame


def _read_manifest(store: Path) -> pd.DataFrame:
    manifest = store / MANIFEST
    if manifest.is_file():
        return pd.read_parquet(manifest)
    return _typed(pd.DataFrame({name: pd.Series(dtype="object") for name in MANIFEST_COLUMNS}))


def _new_rows(folder: Path, clips: list[dict], known: set[str], ingested_at: str) -> list[dict]:
    """Manifest rows for the clips of the store folder ``folder`` whose hash is not known yet."""
    rows = []
    for clip in clips:
        if clip["clip_hash"] in known:
            continue
        known.add(clip["clip_hash"])
        rows.append({**clip, "batch": folder.name, "path": f"{folder.name}/{clip['path']}",
                     "ingested_at": ingested_at})
    return rows


def _append(store: Path, manifest: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """Old rows untouched, new rows after them, written as a whole new file then swapped in."""
    if not rows:
        return manifest
    added = _typed(pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)))
    frame = pd.concat([manifest, added], ignore_index=True) if len(manifest) else added
    write_atomic(store / MANIFEST, frame.to_parquet(index=False))
    return frame


def _completed_manifest(store: Path) -> pd.DataFrame:
    """The manifest after adding journaled clips that a killed run moved but did not record."""
    manifest = _read_manifest(store)
    known = set(manifest["clip_hash"])
    journals = []
    for folder in (p for p in sorted(store.iterdir()) if (p / JOURNAL).is_file()):
        journal = json.loads((folder / JOURNAL).read_text(encoding="utf-8"))
        journals.append((journal["ingested_at"], folder, journal["clips"]))
    rows = [row for ingested_at, folder, clips in sorted(journals, key=lambda item: item[:2])
            for row in _new_rows(folder, clips, known, ingested_at)]
    return _append(store, manifest, rows)


def recover(paths: Paths) -> int:
    """Complete every dataset's manifest after an interrupted ingest; returns the rows added."""
    if not paths.datasets.is_dir():
        return 0
    added = 0
    with ingest_lock(paths):
        for store in sorted(p for p in paths.datasets.iterdir() if p.is_dir()):
            before = len(_read_manifest(store))
            added += len(_completed_manifest(store)) - before
    return added


def _version(manifest: pd.DataFrame) -> str:
    def text(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return repr(float(value)) if isinstance(value, float) else str(value)

    lines = sorted("\t".join(map(text, record))
                   for record in manifest[list(VERSION_COLUMNS)].itertuples(index=False, name=None))
    return "v-" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def _moved_to_quarantine(batch_dir: Path, report: ValidationReport, paths: Paths) -> IngestResult:
    """Move the batch (its report inside) to quarantine; the caller holds the ingest lock."""
    target = free_name(paths.quarantine, batch_dir.name)
    os.rename(batch_dir, target)
    return IngestResult(batch_dir.name, "quarantined", report.dataset, report.n_rows, 0, None,
                        target / REPORT_MD, target, [failure.describe() for failure in report.failures],
                        data_docs=report.data_docs)


def _quarantine(batch_dir: Path, report: ValidationReport, paths: Paths) -> IngestResult:
    with ingest_lock(paths):
        return _moved_to_quarantine(batch_dir, report, paths)


def _refuse_link(link: Path, paths: Paths) -> IngestResult:
    """A batch folder that is a symlink: nothing is read through it; ``quarantine/<batch>/`` gets the report
    and the link itself (moved, so the inbox is clear and the link's target untouched)."""
    target = os.readlink(link)
    report = ValidationReport(link.name, False, 0, [Failure(
        None, None, "batch_is_a_folder", f"{link.name} -> {target}",
        "the batch folder is a symlink; the store keeps real files only, so nothing was read through it or copied: "
        f"put the batch folder itself (a copy, not a link) in the inbox; the link is kept here as {LINK_NAME}")])
    with ingest_lock(paths):
        folder = free_name(paths.quarantine, link.name)
        folder.mkdir()
        report.write(folder, create=False)
        os.rename(link, folder / LINK_NAME)
    return IngestResult(link.name, "quarantined", None, 0, 0, None, folder / REPORT_MD, folder,
                        [failure.describe() for failure in report.failures])


def _same(a: object, b: object) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    return missing_a and missing_b or (not missing_a and not missing_b and a == b)


def _labelling(record: dict) -> str:
    return ", ".join(f"{name} {record[name]!r}" for name in LABEL_COLUMNS if not _same(record.get(name), None))


def _conflict(row: int, clip: dict, other: dict, where: str) -> Failure | None:
    differ = [name for name in LABEL_COLUMNS if not _same(clip.get(name), other.get(name))]
    if not differ:
        return None
    return Failure(row, differ[0], "label_conflict", clip.get(differ[0]),
                   f"label conflict: the same clip content (sha256 {clip['clip_hash'][:12]}...) is {where} with "
                   f"{_labelling(other)}; this row says {_labelling(clip)}. A clip has one label: correct or drop "
                   "one of them, then put the batch back in the inbox")


def label_conflicts(clips: list[dict], manifest: pd.DataFrame, dataset: str) -> list[Failure]:
    """One failure per row (``clip["row"]``) whose clip content is labelled otherwise in the dataset's manifest
    or in another row of the same batch (``LABEL_COLUMNS`` compared, empty equals empty). Within a batch both
    rows are named: neither labelling can be trusted over the other."""
    stored = {}
    for record in manifest[["clip_hash", "path", *LABEL_COLUMNS]].to_dict("records"):
        stored.setdefault(record["clip_hash"], record)
    earlier: dict[str, dict] = {}
    failures: dict[int, Failure] = {}
    for clip in clips:
        digest = clip["clip_hash"]
        if digest in stored:
            found = _conflict(clip["row"], clip, stored[digest], f"in dataset {dataset} as {stored[digest]['path']}")
        elif digest in earlier:
            first = earlier[digest]
            found = _conflict(clip["row"], clip, first, f"in row {first['row']} of this batch ({first['path']})")
            if found is not None and first["row"] not in failures:
                failures[first["row"]] = _conflict(first["row"], first, clip,
                                                   f"in row {clip['row']} of this batch ({clip['path']})")
        else:
            earlier[digest] = clip
            continue
        if found is not None:
            failures[found.row] = found
    return [failures[row] for row in sorted(failures)]


def rows_at_fault(report: ValidationReport) -> set[int] | None:
    """The rows the report's failures name; None when one of them is the whole file's (a missing column, an
    unreadable CSV, a stray symlink): such a batch cannot be split."""
    rows = {failure.row for failure in report.failures}
    return None if None in rows else rows  # type: ignore[return-value]


def _sharing_files(rows: set[int], labels: pd.DataFrame) -> list[Failure]:
    """A failure for each other row that names a file one of ``rows`` names: a file goes to one place, so the
    row goes with it."""
    named = labels.loc[sorted(rows), "path"].dropna()
    owner = {path: row for row, path in named.items()}
    return [Failure(int(row), "path", "shares_file", path, f"names the same file as row {owner[path]}, which "
                    "failed: a file goes to one place, so this row went with it")
            for row, path in labels["path"].items() if path in owner and row not in rows]


def _own_entry(root: Path, relative: object) -> Path | None:
    """``root/relative`` when it is an entry of the batch folder itself (a file or a link, reached through real
    folders only, no absolute path or '..'), which a rename may move; None when there is none to move."""
    if not isinstance(relative, str) or PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        return None
    parts = PurePosixPath(relative).parts
    if not parts or ".." in parts:
        return None
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink() or not folder.is_dir():
            return None
    entry = folder / parts[-1]
    return entry if entry.is_symlink() or entry.is_file() else None


def _write_labels(path: Path, header: list[str], records: list[list[str]]) -> None:
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\n").writerows([header, *records])
    write_atomic(path, text.getvalue().encode("utf-8"))


def _plan_split(batch_dir: Path, report: ValidationReport, labels: pd.DataFrame, bad: set[int],
                accepted_to: Path, paths: Paths) -> dict:
    """Decide the split and write it down (``SPLIT_PLAN``) before anything moves; the caller holds the lock."""
    quarantine = free_name(paths.quarantine, batch_dir.name)
    plan = {"batch": batch_dir.name, "quarantine": quarantine.name, "accepted_to": str(accepted_to),
            "quarantined_rows": sorted(bad), "header": list(labels.columns),
            "records": labels.fillna("").to_numpy().tolist(), "report": report.to_dict()}
    write_atomic(batch_dir / SPLIT_PLAN, json.dumps(plan).encode())
    return plan


def _split(batch_dir: Path, plan: dict, paths: Paths) -> Path:
    """Carry out a split plan: the quarantined rows' labels, report and media go to their quarantine folder,
    the batch keeps the rest. Every step can run again (a killed run's plan is completed by the next one)."""
    target = paths.quarantine / plan["quarantine"]
    target.mkdir(parents=True, exist_ok=True)
    header, records, bad = plan["header"], plan["records"], plan["quarantined_rows"]
    good = [row for row in range(len(records)) if row not in set(bad)]
    _write_labels(target / LABELS_FILENAME, header, [records[row] for row in bad])
    for row in bad:
        entry = _own_entry(batch_dir, records[row][header.index("path")] if "path" in header else None)
        if entry is not None:
            moved = target / entry.relative_to(batch_dir)
            moved.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry, moved)
    submitted = plan["report"]
    renumber = {row: new for new, row in enumerate(bad)}
    failures = [replace(Failure(**f), row=renumber[f["row"]]) for f in submitted["failures"]]
    accounting = {"submitted_batch": plan["batch"], "submitted_rows": len(records),
                  "accepted_rows": good, "accepted_to": plan["accepted_to"],
                  "quarantined_rows": bad, "quarantined_to": str(target),
                  "note": "row numbers are 0-based data rows of the submitted labels.csv; in the quarantined "
                          "labels.csv, row k is quarantined_rows[k]"}
    quarantined = ValidationReport(**{**submitted, "failures": failures, "n_rows": len(bad)})
    quarantined.write(target, create=False)
    _add_section(target / REPORT_MD, accounting)
    write_atomic(target / PARTIAL, json.dumps(accounting, indent=2).encode())
    write_atomic(batch_dir / PARTIAL, json.dumps(accounting, indent=2).encode())
    _write_labels(batch_dir / LABELS_FILENAME, header, [records[row] for row in good])
    (batch_dir / SPLIT_PLAN).unlink()
    return target


def _add_section(report: Path, accounting: dict) -> None:
    """The partial-acceptance paragraph of a split batch's report.md."""
    bad, good = accounting["quarantined_rows"], accounting["accepted_rows"]
    shown = ", ".join(map(str, bad[:20])) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
    text = (f"\n## Partial acceptance\n\nBatch `{accounting['submitted_batch']}` had "
            f"{accounting['submitted_rows']} rows: {len(good)} accepted into `{accounting['accepted_to']}`, "
            f"{len(bad)} quarantined into `{accounting['quarantined_to']}` (submitted rows {shown}; the table above "
            "numbers the quarantined labels.csv). Fix them there and run `affectflow quarantine release "
            f"{Path(accounting['quarantined_to']).name}`. `partial.json` accounts for every row.\n")
    with open(report, "a", encoding="utf-8") as handle:
        handle.write(text)


def _finish_split(batch_dir: Path, paths: Paths) -> dict | None:
    """Complete the split a killed run planned for this batch, if any; returns its accounting."""
    with ingest_lock(paths):
        if not (batch_dir / SPLIT_PLAN).is_file():
            return None
        _split(batch_dir, json.loads((batch_dir / SPLIT_PLAN).read_text(encoding="utf-8")), paths)
        return json.loads((batch_dir / PARTIAL).read_text(encoding="utf-8"))


def _accept(batch_dir: Path, report: ValidationReport, labels: pd.DataFrame, bad: set[int],
            policy: IngestPolicy, paths: Paths, split_before: dict | None = None) -> IngestResult:
    """Accept the rows not in ``bad`` (after the label-conflict check against the store), splitting the
    others off to quarantine, or quarantine the whole batch when nothing or, by ``policy``, not all is good.
    ``split_before``: the accounting of a split a killed run left for ``_finish_split`` to complete."""
    dataset = str(report.dataset)  # every failure names a row: the batch names one dataset
    store = paths.datasets / dataset
    clips = _clip_records(batch_dir, labels.drop(index=sorted(bad)))
    with ingest_lock(paths):
        store.mkdir(parents=True, exist_ok=True)
        manifest = _completed_manifest(store)
        conflicts = label_conflicts(clips, manifest, dataset)
        if conflicts:
            conflicting = {failure.row for failure in conflicts}
            conflicts += _sharing_files(conflicting, labels.drop(index=sorted(bad)))
            report = replace(report, success=False,
                             failures=sorted([*report.failures, *conflicts], key=lambda f: (f.row, f.column or "")))
            bad = bad | {failure.row for failure in conflicts}
        if bad and (policy == "whole" or len(bad) == len(labels)):
            report.write(batch_dir, create=False)
            return _moved_to_quarantine(batch_dir, report, paths)
        target = free_name(store, batch_dir.name)
        accounting = split_before
        if bad:
            _split(batch_dir, _plan_split(batch_dir, report, labels, bad, target, paths), paths)
            clips = [clip for clip in clips if clip["row"] not in bad]
            replace(report, success=True, n_rows=len(clips), failures=[]).write(batch_dir, create=False)
            accounting = json.loads((batch_dir / PARTIAL).read_text(encoding="utf-8"))
        if accounting is not None:
            _add_section(batch_dir / REPORT_MD, accounting)
        ingested_at = datetime.now(UTC).isoformat()
        journal = {"dataset": dataset, "source": batch_dir.name, "ingested_at": ingested_at,
                   "clips": [_journaled(clip) for clip in clips]}
        write_atomic(batch_dir / JOURNAL, json.dumps(journal, indent=2).encode())
        os.rename(batch_dir, target)
        rows = _new_rows(target, journal["clips"], set(manifest["clip_hash"]), ingested_at)
        manifest = _append(store, manifest, rows)
    known_before = len(clips) - len(rows)
    reasons = [f"{known_before} of {len(clips)} clips were already in dataset {dataset} (same content); "
               f"the files are kept in {target}"] if known_before else []
    quarantine, n_quarantined = None, 0
    if accounting is not None:
        quarantine, n_quarantined = Path(accounting["quarantined_to"]), len(accounting["quarantined_rows"])
        failed = [failure.describe() for failure in report.failures]  # empty when a killed run split it
        reasons.append(f"{n_quarantined} of {accounting['submitted_rows']} rows failed and were quarantined in "
                       f"{quarantine} (its report.md says why)" + "".join(f"; {text}" for text in failed[:5])
                       + (f"; and {len(failed) - 5} more" if len(failed) > 5 else ""))
    return IngestResult(batch_dir.name, "accepted" if rows else "duplicate", dataset, len(clips), len(rows),
                        _version(manifest), target / REPORT_MD, target, reasons,
                        n_quarantined=n_quarantined, quarantine=quarantine, data_docs=report.data_docs)


def ingest_batch(batch_dir: Path, paths: Paths, policy: IngestPolicy = DEFAULT_POLICY) -> IngestResult:
    """Validate one batch folder, then move it into the store, to quarantine, or (policy ``partial``, when every
    failure names a row) its good rows into the store and the others to quarantine (module docstring).

    The reports are written into the batch folder before it moves, so they travel with it; the GX result and
    its Data Docs stay in the home's GX project (``paths.gx``). A batch folder that is a symlink is refused unread.
    """
    batch_dir = Path(batch_dir)
    if batch_dir.is_symlink():
        return _refuse_link(batch_dir, paths)
    if not batch_dir.is_dir():
        raise FileNotFoundError(f"no batch folder at {batch_dir}")
    if policy not in POLICIES:
        raise UserError(f"unknown ingest policy {policy!r}: choose one of {', '.join(POLICIES)}")
    split_before = _finish_split(batch_dir, paths)
    report = validate_batch(batch_dir, paths.gx)
    report.write(batch_dir, create=False)
    bad = rows_at_fault(report)
    if bad is None or (bad and policy == "whole"):
        return _quarantine(batch_dir, report, paths)
    labels = read_labels(batch_dir)
    if bad:
        shared = _sharing_files(bad, labels)
        report = replace(report, failures=sorted([*report.failures, *shared], key=lambda f: (f.row, f.column or "")))
        bad |= {failure.row for failure in shared}
    return _accept(batch_dir, report, labels, bad, policy, paths, split_before)


def pending_batches(inbox: Path) -> list[Path]:
    """Batch folders waiting in ``inbox``, sorted; dot-folders are uploads still in progress. A symlink to a
    folder is listed too (``ingest_batch`` refuses it with a report, instead of leaving it unexplained)."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_dir() and not p.name.startswith("."))


def ingest_inbox(paths: Paths, progress: Progress | None = None, inbox: Path | None = None,
                 waiting: Say | None = None, policy: IngestPolicy = DEFAULT_POLICY) -> list[IngestResult]:
    """Finish any interrupted ingest, then ingest every batch of ``inbox`` (default: the home's).

    One run per home at a time: a second waits (``waiting(message)`` says so first), then ingests what the first
    left. ``progress(done, total, result)`` is called after each batch; a batch that left the inbox after it
    was listed (moved by hand) is skipped.
    """
    with _ingest_run(paths, waiting):
        recover(paths)
        batches = pending_batches(inbox or paths.inbox)
        results = []
        for done, batch in enumerate(batches, 1):
            if not (batch.is_dir() or batch.is_symlink()):
                continue
            results.append(ingest_batch(batch, paths, policy=policy))
            if progress is not None:
                progress(done, len(batches), results[-1])
        return results


def list_datasets(paths: Paths) -> list[str]:
    """Datasets with a manifest in the curated store."""
    if not paths.datasets.is_dir():
        return []
    return sorted(p.name for p in paths.datasets.iterdir() if (p / MANIFEST).is_file())


def _manifest_of(dataset: str, paths: Paths) -> pd.DataFrame:
    if dataset not in list_datasets(paths):
        known = ", ".join(list_datasets(paths)) or "none ingested yet"
        raise UnknownDatasetError(f"unknown dataset {dataset!r} in {paths.datasets} (available: {known}); "
                                  "import and ingest a batch of it first (README: Deployments)")
    return pd.read_parquet(paths.datasets / dataset / MANIFEST)


def dataset_version(dataset: str, paths: Paths) -> str:
    """``v-`` + 12 hex digits of the manifest's labelled content; the same clips and labels give the same id."""
    return _version(_manifest_of(dataset, paths))


def validation_report(dataset: str, paths: Paths) -> str:
    """The validation report of the dataset's newest accepted batch."""
    reports = sorted((paths.datasets / dataset).glob(f"*/{REPORT_MD}"), key=lambda p: p.stat().st_mtime)
    return str(reports[-1]) if reports else "none"


def _extra_label_columns(store: Path, batches: Sequence[str]) -> pd.DataFrame:
    """The corpus's own columns (sex, age, votes, ...) from each stored batch's labels.csv, keyed by the
    manifest ``path``. The manifest keeps the contract's columns; the batch keeps the rest, unchanged."""
    parts = []
    for batch in batches:
        labels = read_labels(store / batch)
        extra = [c for c in labels.columns if c not in MANIFEST_COLUMNS and c != "dataset"]
        parts.append(labels[extra].assign(path=[f"{batch}/{p}" for p in labels["path"]]))
    return pd.concat(parts, ignore_index=True).drop_duplicates("path") if parts else pd.DataFrame(columns=["path"])


def load_dataset(dataset: str, paths: Paths) -> pd.DataFrame:
    """The manifest rows of ``dataset`` with ``path`` made absolute, plus any extra columns the batches'
    labels.csv carry (e.g. CREMA-D ``sex`` and ``age``: what per-group metrics need)."""
    store = paths.datasets / dataset
    manifest = _manifest_of(dataset, paths)
    manifest = manifest.merge(_extra_label_columns(store, manifest["batch"].unique()), on="path", how="left")
    manifest["path"] = [str(store / relative) for relative in manifest["path"]]
    return manifest
