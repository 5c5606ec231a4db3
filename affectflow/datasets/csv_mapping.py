"""Any folder of clips with a label CSV: users map their columns and emotion codes onto the contract.

``columns`` maps contract names to the CSV's (``{"path": "file", "emotion": "label", "speaker":
"actor"}``); unmapped contract names are looked up under their own name. ``emotions`` maps the
CSV's codes to canonical emotions; codes already spelled canonically (or as a common alias such as
``happy``) need no entry. Every other CSV column is kept as an extra column. Rows that cannot be
used (missing file, unmapped emotion, bad number, path leaving the folder) are reported, not imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd

from affectflow.datasets.base import (
    CONTRACT_ORDER,
    Adapter,
    Clip,
    Option,
    Scan,
    canonical_emotion,
    corpus_file,
    label_row,
)
from affectflow.labels import EMOTIONS, REQUIRED_COLUMNS

MAPPABLE: tuple[str, ...] = ("path", "speaker", "emotion", "intensity", "arousal", "valence", "split")


class RowError(ValueError):
    """Why one CSV row cannot become a clip."""


def parse_mapping(text: str) -> dict[str, str]:
    """``"path=file,emotion=label"`` -> ``{"path": "file", "emotion": "label"}`` (command-line form)."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise ValueError(f"expected KEY=VALUE pairs separated by commas, got {text!r}")
    return {key.strip(): value.strip() for key, value in pairs}


def _source_columns(header: list[str], columns: Mapping[str, str]) -> dict[str, str]:
    """Contract name -> CSV column, for the contract names the CSV provides."""
    unknown = sorted(set(columns) - set(MAPPABLE))
    if unknown:
        raise ValueError(f"cannot map {unknown}: mappable columns are {list(MAPPABLE)}")
    chosen = {name: columns.get(name, name) for name in MAPPABLE}
    needed = [name for name in MAPPABLE if name in columns or name in REQUIRED_COLUMNS]
    absent = [f"{name} (column {chosen[name]!r})" for name in needed if chosen[name] not in header]
    if absent:
        raise ValueError(f"the label CSV lacks {', '.join(absent)}; its columns are {header}")
    return {name: column for name, column in chosen.items() if column in header}


def _clip_path(source: Path, text: str) -> str:
    path = PurePosixPath(text.strip().replace("\\", "/"))
    if path.is_absolute():
        try:
            path = PurePosixPath(Path(path).resolve().relative_to(source).as_posix())
        except ValueError as err:
            raise RowError("path is outside the corpus folder") from err
    if not path.parts or ".." in path.parts:
        raise RowError("path is empty or contains '..'")
    if not (source / path).is_file():
        raise RowError("no such file")
    return path.as_posix()


def _number(text: str, name: str, low: float, high: float) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise RowError(f"{name} {text!r} is not a number in [{low}, {high}]")
    return value


def _row(source: Path, record: Mapping[str, str], mapped: Mapping[str, str], emotions: Mapping[str, str],
         extras: Mapping[str, str]) -> dict:
    path = _clip_path(source, record[mapped["path"]])
    speaker = record[mapped["speaker"]].strip()
    code = record[mapped["emotion"]].strip()
    emotion = emotions.get(code) or canonical_emotion(code)
    if not speaker:
        raise RowError("speaker is empty")
    if emotion is None:
        raise RowError(f"emotion {code!r} is not mapped to the canonical vocabulary")
    bounds = {"intensity": (0.0, math.inf), "arousal": (-1.0, 1.0), "valence": (-1.0, 1.0)}
    given = {name: _number(record[mapped[name]], name, *bounds[name]) for name in bounds if name in mapped}
    intensity = 1.0 if given.get("intensity") is None else given["intensity"]
    row = label_row(path, speaker, emotion, intensity, **{new: record[old] for old, new in extras.items()})
    row.update({name: given[name] for name in ("arousal", "valence") if given.get(name) is not None})
    if "split" in mapped:
        row["split"] = record[mapped["split"]].strip() or None
    return row


def scan(source: Path, label_file: str | None = None, columns: Mapping[str, str] | None = None,
         emotions: Mapping[str, str] | None = None, delimiter: str = ",", encoding: str = "utf-8-sig") -> Scan:
    """One clip per usable CSV row; ``label_file`` is relative to ``source`` or absolute."""
    if not label_file:
        raise ValueError("the csv adapter needs label_file (the label CSV)")
    emotions = dict(emotions or {})
    wrong = sorted(v for v in emotions.values() if v not in EMOTIONS)
    if wrong:
        raise ValueError(f"emotion mapping targets {wrong} are not canonical emotions {list(EMOTIONS)}")
    csv_path = corpus_file(source, label_file, ())
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, sep=delimiter, encoding=encoding)
    mapped = _source_columns(list(table.columns), columns or {})
    extras = {name: f"source_{name}" if name in CONTRACT_ORDER or name == "split" else name
              for name in table.columns if name not in mapped.values()}
    result, seen = Scan(), set()
    for number, record in enumerate(table.to_dict("records"), 2):  # line 1 is the header
        where = f"{csv_path.name}:{number}"
        try:
            row = _row(source, record, mapped, emotions, extras)
        except RowError as err:
            result.skip(where, str(err))
            continue
        if row["path"] in seen:
            result.skip(where, "path is listed more than once")
            continue
        seen.add(row["path"])
        result.clips.append(Clip(row["path"], row))
    return result


ADAPTER = Adapter(
    name="csv",
    description="any folder + a label CSV: map its columns and emotion codes onto the contract",
    scan=scan,
    options={
        "label_file": Option("the label CSV (relative to SOURCE_DIR or absolute)"),
        "columns": Option("contract column = CSV column pairs, e.g. path=file,emotion=label,speaker=actor",
                          parse=parse_mapping),
        "emotions": Option("CSV code = canonical emotion pairs, e.g. W=anger,L=boredom", parse=parse_mapping),
        "delimiter": Option("field separator of the label CSV (default ',')"),
        "encoding": Option("text encoding of the label CSV (default utf-8)"),
    },
    needs_dataset_name=True,
)
