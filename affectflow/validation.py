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

The suite runs the way GX is designed to be used: through a file-backed Data Context, the home's ``gx/``
project (``Paths.gx``). The JSON files stay the reviewed source; each run first brings the stored suite in
line with them. A checkpoint per dataset (``affectflow-<dataset>``, or the suite's name when the batch names
no single dataset) runs the suite's validation definition; GX stores every result (the validation history)
and its ``UpdateDataDocsAction`` renders that result's page and the site index. The report names both.
"""

from __future__ import annotations

import atexit
import csv
import fcntl
import functools
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlparse

import pandas as pd

from affectflow.datasets.base import DATASET_NAME
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

log = logging.getLogger(__name__)

SUITE_NAME = "labels"
_SUITE_FILE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
NUMERIC_COLUMNS: tuple[str, ...] = ("arousal", "valence", "intensity")
PROBE_COLUMNS: tuple[str, ...] = ("path_safe", "file_exists", "decodable", "has_video", "has_audio", "duration_s")
REPORT_MD = "report.md"
REPORT_JSON = "report.json"

# GX is imported once per process (~2.3 s, the fixed cost) and a project's context opened once per process;
# a context is not thread-safe, so runs are serialised (across processes too: see _project_lock).
_GX_LOCK = threading.Lock()
_CONTEXTS: dict[Path, object] = {}
DERIVED_FOLDERS = ("expectations", "validation_definitions", "checkpoints")  # made from expectations/*.json
_SOURCE = "affectflow"  # one pandas data source, asset and batch definition: every suite checks the same frame
_SITE = "local_site"
# The index lists the latest results only: GX reads every result it lists on each build, so a full index
# would make each validation slower as the history grows. Every result keeps its own page.
_INDEX_LIMIT = 100
_SITE_CONFIG = {
    "class_name": "SiteBuilder",
    "show_how_to_buttons": False,
    "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                      "base_directory": f"uncommitted/data_docs/{_SITE}/"},
    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": _INDEX_LIMIT},
}


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
    """Outcome of validating one batch; ``dataset`` is set when the batch names exactly one.

    ``data_docs`` is the HTML page of this result in the GX project's Data Docs, ``validation_result`` its key
    in the GX store (``<suite>/<batch>/<run time>/<batch id>``, the JSON under ``uncommitted/validations/``);
    both are None when the suite did not run (labels.csv unreadable).
    """

    batch: str
    success: bool
    n_rows: int
    failures: list[Failure] = field(default_factory=list)
    dataset: str | None = None
    suite: str = SUITE_NAME
    data_docs: str | None = None
    validation_result: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        status = "passed" if self.success else f"FAILED ({len(self.failures)} problems)"
        lines = [f"# Validation report: batch `{self.batch}`", "",
                 f"- status: **{status}**", f"- dataset: {self.dataset or 'unknown'}",
                 f"- rows: {self.n_rows} (rows below are 0-based data rows; the header is not counted)",
                 f"- suite: expectations/{self.suite}.json"]
        if self.data_docs:
            lines += [f"- Data Docs: {self.data_docs}", f"- GX validation result: {self.validation_result}"]
        lines.append("")
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
def _scratch_project() -> Path:
    """The project of callers without a home: a temporary folder of this process, removed at its exit."""
    folder = Path(tempfile.mkdtemp(prefix="affectflow-gx-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder / "gx"


@contextmanager
def _project_lock(root: Path) -> Iterator[None]:
    """One process at a time in the project at ``root``: GX writes its config, stores and site unlocked."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _context(root: Path):
    """The file-backed context at ``root`` (scaffolded on first use), opened once per process and project.

    Its data source and Data Docs site are set here; they live in ``great_expectations.yml``, which GX holds in
    memory, so they are written once and never changed by a run. Call with the project lock held.
    """
    context = _CONTEXTS.get(root)
    if context is not None and (root / "great_expectations.yml").is_file():
        return context
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # read when GX starts: no usage reports leave the home
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", context_root_dir=root)
    if context.get_config().analytics_enabled is not False:  # and the project says so for any other user of it
        context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if context.get_config().data_docs_sites.get(_SITE) != _SITE_CONFIG:
        context.update_data_docs_site(_SITE, _SITE_CONFIG)
    if _SOURCE not in context.data_sources.all():
        context.data_sources.add_pandas(_SOURCE).add_dataframe_asset(_SOURCE) \
            .add_batch_definition_whole_dataframe(_SOURCE)
    _CONTEXTS[root] = context
    return context


def _without_ids(suite) -> dict:
    """A suite's JSON without the ids GX assigns when storing it (GX's own equality compares them)."""
    data = suite.to_json_dict()
    data.pop("id", None)
    data["expectations"] = [{k: v for k, v in e.items() if k != "id"} for e in data["expectations"]]
    return data


def _checkpoint(context, suite_name: str, name: str):
    """Checkpoint ``name`` running suite ``suite_name``, made on first use; the stored suite is first replaced
    by the JSON files' when they differ, so an edited ``expectations/*.json`` takes effect at once."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.exceptions import DataContextError

    wanted = gx.ExpectationSuite(**full_suite(suite_name))
    try:
        if _without_ids(context.suites.get(suite_name)) != _without_ids(wanted):
            context.suites.add_or_update(wanted)
    except DataContextError:
        context.suites.add(wanted)
    try:
        definition = context.validation_definitions.get(suite_name)
    except DataContextError:
        batch = context.data_sources.get(_SOURCE).get_asset(_SOURCE).get_batch_definition(_SOURCE)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=context.suites.get(suite_name)))
    try:
        return context.checkpoints.get(name)
    except DataContextError:
        return context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[definition], result_format="COMPLETE",
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[_SITE])]))


def _checkpoint_name(dataset: str | None, suite: str) -> str:
    """``affectflow-<dataset>``; the suite's name for a batch without one usable name (it is a file name)."""
    if dataset and DATASET_NAME.match(dataset) and len(dataset) <= 100:
        return f"affectflow-{dataset}"
    return suite


def _path_of(url: str) -> str:
    return unquote(urlparse(url).path)


def _damaged_files(root: Path) -> list[Path]:
    """Project files that do not parse (a process killed while GX wrote them): its config and the suites,
    validation definitions and checkpoints, all derived from ``expectations/*.json`` and rebuilt at will."""
    import yaml

    damaged = []
    config = root / "great_expectations.yml"
    try:
        if config.is_file():
            yaml.safe_load(config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        damaged.append(config)
    for folder in DERIVED_FOLDERS:
        for path in (root / folder).rglob("*.json"):
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                damaged.append(path)
    return damaged


def _rebuild(root: Path, damaged: list[Path]) -> None:
    """Drop the derived part of the project (and its config if damaged); the next ``_context`` and
    ``_checkpoint`` make them again from the suite files. The validation history is kept."""
    log.warning("GX project %s: %d damaged files (%s); rebuilding its suites, validation definitions and "
                "checkpoints from expectations/", root, len(damaged), ", ".join(str(p) for p in damaged[:5]))
    for folder in DERIVED_FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)
    if root / "great_expectations.yml" in damaged:
        (root / "great_expectations.yml").unlink()
    _CONTEXTS.pop(root, None)


def _run_checkpoint(frame: pd.DataFrame, suite: str, checkpoint: str, run_name: str, root: Path):
    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(root)
    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    outcome = _checkpoint(context, suite, checkpoint).run(batch_parameters={"dataframe": frame}, run_id=run_id)
    ((key, result),) = outcome.run_results.items()
    (site,) = context.get_docs_sites_urls(resource_identifier=key, site_names=[_SITE])
    page = site["site_url"] or context.get_docs_sites_urls(site_names=[_SITE])[0]["site_url"]
    return result, "/".join(key.to_tuple()), _path_of(page)


def _run_suite(frame: pd.DataFrame, suite: str, checkpoint: str, batch: str, root: Path):
    """Run ``suite`` through ``checkpoint`` of the project at ``root``: the GX result, its store key and the
    path of its Data Docs page (the site's index if GX names no page). A project that a killed process left
    with a half-written file is rebuilt once (``_rebuild``) instead of failing every later validation."""
    run_name = batch.replace("\\", "_") if batch.strip(".") else "batch"  # a path part in the store
    with _GX_LOCK, _project_lock(root):
        try:
            return _run_checkpoint(frame, suite, checkpoint, run_name, root)
        except Exception:
            damaged = _damaged_files(root)
            if not damaged:
                raise
            _rebuild(root, damaged)
            return _run_checkpoint(frame, suite, checkpoint, run_name, root)


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


def validate_batch(batch_dir: Path, gx_root: Path | None = None) -> ValidationReport:
    """Validate ``batch_dir`` (media + labels.csv) against its dataset's suite (see :func:`suite_for`).

    ``gx_root`` is the GX project (a home's ``Paths.gx``), made on first use; the result is stored there and
    its Data Docs page built. Without one, a temporary project of this process is used (removed at exit).
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
    root = Path(gx_root).resolve() if gx_root is not None else _scratch_project()
    result, key, page = _run_suite(frame, suite, _checkpoint_name(dataset, suite), batch_dir.name, root)
    failures = _symlink_failure(batch_dir, labels) + _failures(result, labels, notes)
    return ValidationReport(batch_dir.name, not failures, len(labels), failures, dataset, suite, page, key)
