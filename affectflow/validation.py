"""Validate one batch's labels.csv and media with a Great Expectations suite from ``expectations/``.

The suite is ``expectations/<dataset>.json`` when the batch names a dataset that has one (a corpus
whose rules differ: its emotions, intensity levels, required modalities); such a suite extends
``labels.json`` (``meta.extends``), the default for every other dataset.

Problems become a :class:`ValidationReport` that names every failing row, never an exception: a batch
that cannot be read is reported as a file-level failure. The media are probed first (path safety,
existence, decodability, duration) and the results added as columns, so the suite checks labels and
media in one run.

The curated store keeps real files only: a ``labels.csv`` that is a symlink is not read, and a batch holding
any symlink (a clip, a sub-folder, an extra file) fails with the links named. (A batch folder that is itself a
symlink is refused before validation, by ``affectflow.ingest``.)
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from affectflow.errors import UserError
from affectflow.labels import (
    CONTROL_CHARACTERS,
    LABELS_FILENAME,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    TEXT_COLUMNS,
)
from affectflow.media import MediaError, probe
from affectflow.tables import markdown_table
from expectations import suite_dict

SUITE_NAME = "labels"
_SUITE_FILE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
NUMERIC_COLUMNS: tuple[str, ...] = ("arousal", "valence", "intensity")
PROBE_COLUMNS: tuple[str, ...] = ("path_safe", "file_exists", "decodable", "has_video", "has_audio", "duration_s")
REPORT_MD = "report.md"
REPORT_JSON = "report.json"

# GX is imported and its context built once per process (the import, ~2.3 s, is the fixed cost);
# a context is not thread-safe, so runs are serialised.
_GX_LOCK = threading.Lock()


class LabelFileError(UserError, ValueError):
    """labels.csv is missing, a symlink, empty, not UTF-8 or not parsable as CSV."""


_CONTROL = re.compile(CONTROL_CHARACTERS)


def visible(text: str) -> str:
    """``text`` with control characters written as escapes (``\\x00``, ``\\n``), for reports: a NUL or a line
    break in a user's id must show, not cut the line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


@dataclass(frozen=True)
class Failure:
    """One failed check: ``row`` is the 0-based CSV data row, or None for file- and column-level problems."""

    row: int | None
    column: str | None
    expectation: str
    value: object
    reason: str

    def describe(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        if self.column is not None:
            where += f", column {self.column}"
        shown = "" if self.value is None else f" (value {self.value!r})"
        return f"{where}: {self.reason}{shown}"


@dataclass
class ValidationReport:
    """Outcome of validating one batch; ``dataset`` is set when the batch names exactly one."""

    batch: str
    success: bool
    n_rows: int
    failures: list[Failure] = field(default_factory=list)
    dataset: str | None = None
    suite: str = SUITE_NAME

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        status = "passed" if self.success else f"FAILED ({len(self.failures)} problems)"
        lines = [f"# Validation report: batch `{self.batch}`", "",
                 f"- status: **{status}**", f"- dataset: {self.dataset or 'unknown'}",
                 f"- rows: {self.n_rows} (rows below are 0-based data rows; the header is not counted)",
                 f"- suite: expectations/{self.suite}.json", ""]
        if self.failures:
            # values verbatim (a float out of range must not be rounded into range); None is an empty cell
            rows = [{"row": "file" if f.row is None else f.row, "column": f.column,
                     "value": None if f.value is None else visible(str(f.value)), "reason": f.reason,
                     "expectation": f.expectation} for f in self.failures]
            columns = ["row", "column", "value", "reason", "expectation"]
            lines.append(markdown_table(rows, columns, missing=""))
        else:
            lines.append("Every check passed.")
        return "\n".join(lines) + "\n"

    def write(self, folder: Path, create: bool = True) -> Path:
        """Write ``report.md`` and ``report.json`` into ``folder`` (made first unless ``create`` is false: then
        a folder that is gone stays gone); returns the Markdown path."""
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT_JSON).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n",
                                          encoding="utf-8")
        markdown = folder / REPORT_MD
        markdown.write_text(self.to_markdown(), encoding="utf-8")
        return markdown


def read_labels(batch_dir: Path) -> pd.DataFrame:
    """labels.csv as text columns (only empty cells are missing), or ``LabelFileError`` saying why not.

    Reading everything as text keeps speaker ids such as ``007`` intact; numbers are parsed later.
    Parsing is strict (csv ``strict=True``, same field count on every row): pandas would silently
    turn an extra field into an index and shift the row's values.
    """
    path = Path(batch_dir) / LABELS_FILENAME
    if path.is_symlink():
        raise LabelFileError(f"{LABELS_FILENAME} is a symlink (to {os.readlink(path)}); it was not read: the batch "
                             "must hold the file itself")
    if not path.is_file():
        raise LabelFileError(f"{LABELS_FILENAME} is missing from the batch folder")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelFileError(f"{LABELS_FILENAME} is not UTF-8 text (invalid byte "
                             f"{data[err.start:err.start + 1]!r} at offset {err.start})") from err
    if not text.strip():
        raise LabelFileError(f"{LABELS_FILENAME} is empty")
    try:
        header, *rows = [record for record in csv.reader(io.StringIO(text, newline=""), strict=True) if record]
    except csv.Error as err:
        raise LabelFileError(f"{LABELS_FILENAME} cannot be parsed as CSV: {err}") from err
    if not all(name.strip() for name in header):
        raise LabelFileError(f"{LABELS_FILENAME} has a column without a name")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise LabelFileError(f"{LABELS_FILENAME} repeats columns: {', '.join(repeated)}")
    for number, record in enumerate(rows):
        if len(record) != len(header):
            raise LabelFileError(f"{LABELS_FILENAME} cannot be parsed as CSV: data row {number} has "
                                 f"{len(record)} fields, the header has {len(header)}")
    if not rows:
        raise LabelFileError(f"{LABELS_FILENAME} has a header but no rows")
    frame = pd.DataFrame(rows, columns=header, dtype=str)
    return frame.mask(frame.eq(""))


def _unsafe_reason(root: Path, relative: str) -> str | None:
    """Why ``relative`` may not name a clip of the batch at ``root``, or None when it may."""
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).drive:
        return "absolute path"
    parts = PurePosixPath(relative).parts
    if ".." in parts:
        return "path contains '..'"
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return f"'{current.relative_to(root)}' is a symlink (the store keeps real files only)"
    if not current.resolve().is_relative_to(root.resolve()):
        return "path resolves outside the batch folder"
    return None


def symlinks(batch_dir: Path) -> dict[str, str]:
    """Every symlink under ``batch_dir`` (files and folders, none followed): relative path -> its target."""
    found = {}
    for folder, folders, files in os.walk(batch_dir, followlinks=False):
        for name in folders + files:
            path = Path(folder) / name
            if path.is_symlink():
                found[path.relative_to(batch_dir).as_posix()] = os.readlink(path)
    return dict(sorted(found.items()))


def _symlink_failure(batch_dir: Path, labels: pd.DataFrame) -> list[Failure]:
    """One file-level failure naming the batch's symlinks that no row's path runs into (those rows are named
    by the path check already)."""
    links = symlinks(batch_dir)
    for relative in labels["path"].dropna() if "path" in labels else []:
        parts = PurePosixPath(relative).parts
        for end in range(1, len(parts) + 1):
            if links.pop(PurePosixPath(*parts[:end]).as_posix(), None) is not None:
                break
    if not links:
        return []
    shown = "; ".join(f"{name} -> {target}" for name, target in list(links.items())[:10])
    shown += f"; and {len(links) - 10} more" if len(links) > 10 else ""
    return [Failure(None, None, "no_symlinks", shown,
                    f"the batch holds {len(links)} symlink(s) that no row names; the store keeps real files only, "
                    "so the batch is refused: remove each link or replace it by the file itself")]


def _probe_clip(root: Path, relative: str) -> tuple[dict, str]:
    """Probe columns for one row and a note saying what went wrong.

    Checks stop at the first failure and leave later columns null, which GX column-map expectations
    skip, so a bad row is reported once, at its root cause.
    """
    columns: dict = dict.fromkeys(PROBE_COLUMNS)
    unsafe = _unsafe_reason(root, relative)
    columns["path_safe"] = unsafe is None
    if unsafe:
        return columns, unsafe
    clip = root / relative
    columns["file_exists"] = clip.is_file()
    if not clip.is_file():
        return columns, "no such file" if not clip.exists() else "not a regular file"
    try:
        info = probe(clip)
    except MediaError as err:
        columns["decodable"] = False
        return columns, str(err).removeprefix(f"{clip}: ")
    columns.update(decodable=True, has_video=info.has_video, has_audio=info.has_audio,
                   duration_s=info.duration_s)
    return columns, f"duration {info.duration_s:.2f} s"


def _as_numbers(column: pd.Series) -> pd.Series:
    """Text to floats; text that is not a number becomes -inf so that the range checks name its row."""
    numbers = pd.to_numeric(column, errors="coerce").astype("float64")
    return numbers.mask(column.notna() & numbers.isna(), -math.inf)


def checked_frame(batch_dir: Path, labels: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The frame the suite validates (numbers parsed, probe columns added) and one probe note per row."""
    frame = labels.copy()
    for name in NUMERIC_COLUMNS:
        frame[name] = _as_numbers(labels[name]) if name in labels else math.nan
    for name in (n for n in TEXT_COLUMNS if n in OPTIONAL_COLUMNS and n not in labels):
        frame[name] = pd.Series([None] * len(labels), index=frame.index, dtype="object")  # so its checks run
    root = Path(batch_dir)
    paths = labels["path"] if "path" in labels else pd.Series([None] * len(labels))
    probed = {path: _probe_clip(root, path) for path in paths.dropna().unique()}  # each file once
    rows = [probed.get(path, (dict.fromkeys(PROBE_COLUMNS), "")) for path in paths]  # null path: no probe
    probes = pd.DataFrame([columns for columns, _ in rows], index=frame.index, columns=list(PROBE_COLUMNS))
    for name in PROBE_COLUMNS:
        frame[name] = probes[name].astype("float64" if name == "duration_s" else "object")
    return frame, [note for _, note in rows]


def suite_for(dataset: str | None) -> str:
    """The suite a batch of ``dataset`` is validated with: its own when ``expectations/`` has one."""
    if dataset and dataset != SUITE_NAME and _SUITE_FILE.match(dataset):
        if resources.files("expectations").joinpath(f"{dataset}.json").is_file():
            return dataset
    return SUITE_NAME


def full_suite(name: str) -> dict:
    """The suite ``name`` with the expectations of the suite it extends (``meta.extends``) first."""
    suite = suite_dict(name)
    base = suite.get("meta", {}).get("extends")
    if base:
        suite["expectations"] = full_suite(base)["expectations"] + suite["expectations"]
    return suite


@functools.cache
def _context():
    """The ephemeral GX context, built once per process."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@functools.cache
def _validation_definition(name: str):
    """The validation definition of suite ``name`` in the process's context, built once."""
    import great_expectations as gx

    context = _context()
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe(name))
    suite = context.suites.add(gx.ExpectationSuite(**full_suite(name)))
    return context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))


def _run_suite(frame: pd.DataFrame, docs_dir: Path | None, suite: str):
    """Run ``suite``; optionally render this one result as GX Data Docs (static HTML) into ``docs_dir``."""
    with _GX_LOCK:
        context, definition = _context(), _validation_definition(suite)
        store = context.validation_results_store
        try:
            result = definition.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")
            if docs_dir is not None:
                docs_dir.mkdir(parents=True, exist_ok=True)
                context.update_data_docs_site("local_site", {
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                      "base_directory": str(docs_dir.resolve())},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                })
                context.build_data_docs(site_names=["local_site"])
        finally:
            for key in store.list_keys():  # results stay in memory otherwise; one batch per site
                store.remove_key(key)
    return result


def _exception_message(result) -> str | None:
    for info in (result.exception_info or {}).values():
        if isinstance(info, dict) and info.get("raised_exception"):
            return info.get("exception_message") or "unknown error"
    return None


def _failures(result, labels: pd.DataFrame, notes: list[str]) -> list[Failure]:
    """Turn failed expectation results into per-row failures named by the CSV column at fault."""
    missing = {name for name in REQUIRED_COLUMNS if name not in labels}
    failures: list[Failure] = []
    for outcome in result.results:
        if outcome.success:
            continue
        config = outcome.expectation_config
        column = config.kwargs.get("column")
        reason = config.meta.get("reason", config.type)
        if column in missing and config.type != "expect_column_to_exist":
            continue  # a missing required column is reported once, by expect_column_to_exist
        error = _exception_message(outcome)
        if error is not None:
            failures.append(Failure(None, column, config.type, None, f"check could not run: {error}"))
            continue
        indices = outcome.result.get("unexpected_index_list")
        if indices is None:
            value = None if config.type == "expect_column_to_exist" else outcome.result.get("observed_value")
            if column in labels:
                reason = f"{reason}; found: {', '.join(sorted(labels[column].dropna().unique())[:10])}"
            failures.append(Failure(None, column, config.type, value, reason))
            continue
        probed = column in PROBE_COLUMNS
        shown = "path" if probed else column
        for row in map(int, indices):  # read_labels gives a RangeIndex: index == data row
            raw = labels.at[row, shown] if shown in labels else None
            detail = f"{reason}: {notes[row]}" if probed and notes[row] else reason
            failures.append(Failure(row, shown, config.type, None if pd.isna(raw) else raw, detail))
    return sorted(failures, key=lambda f: (f.row is not None, f.row or 0, f.column or ""))


def _single_dataset(labels: pd.DataFrame) -> str | None:
    names = labels["dataset"].dropna().unique() if "dataset" in labels else []
    return str(names[0]) if len(names) == 1 else None


def validate_batch(batch_dir: Path, docs_dir: Path | None = None) -> ValidationReport:
    """Validate ``batch_dir`` (media + labels.csv) against its dataset's suite (see :func:`suite_for`).

    With ``docs_dir``, GX Data Docs for this run are written there too (~0.2 s, ~4 MB of static
    assets, so only where a person will browse them).
    """
    batch_dir = Path(batch_dir)
    try:
        labels = read_labels(batch_dir)
    except LabelFileError as err:
        return ValidationReport(batch_dir.name, False, 0,
                                [Failure(None, None, "read_labels", None, str(err))])
    frame, notes = checked_frame(batch_dir, labels)
    dataset = _single_dataset(labels)
    suite = suite_for(dataset)
    result = _run_suite(frame, docs_dir, suite)
    failures = _symlink_failure(batch_dir, labels) + _failures(result, labels, notes)
    return ValidationReport(batch_dir.name, not failures, len(labels), failures, dataset, suite)
