"""Tables for reports: Markdown (one cell per value, ``|`` and line breaks escaped, missing values as "-") and
CSV files neutralised against spreadsheet formula injection.

CSV reports (``write_report_csv``) are written for people, who open them in a spreadsheet, and their values come
from users' label files (speaker ids, paths, groups). A spreadsheet evaluates a cell that starts with ``=``, ``+``,
``-`` or ``@`` (and some read a leading tab or carriage return the same way) as a formula: ``=HYPERLINK(...)`` in a
speaker id would become a live link, or worse (CWE-1236). Such text cells get a leading apostrophe (``'=1+2``),
which spreadsheets show as text; numbers (``-0.25``, typed or as text) are left alone, they evaluate to
themselves. The project never reads a report CSV back as data. Label files (``labels.csv``) are data, not
reports: they are written and read verbatim, and never evaluated.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

_PIPE = re.compile(r"(\\*)\|")
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def cell(value: object, float_format: str = ".3f", missing: str = "-") -> str:
    """One cell's text: ``missing`` for None/NaN, floats with ``float_format``, integers as they are;
    a ``|`` is escaped (backslashes before it doubled, so it never closes the cell) and line breaks
    become spaces, since labels come from users' CSVs."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return missing
    if isinstance(value, numbers.Integral):  # bool and numpy integers too
        text = str(value) if isinstance(value, bool) else str(int(value))
    elif isinstance(value, numbers.Real):
        text = format(float(value), float_format)
    else:
        text = str(value)
    text = " ".join(text.splitlines())
    return _PIPE.sub(lambda m: 2 * m.group(1) + "\\|", text)


def markdown_table(rows: pd.DataFrame | Iterable[Mapping[str, object]], columns: Sequence[str] | None = None,
                   float_format: str = ".3f", missing: str = "-") -> str:
    """A GitHub-flavoured Markdown table (header, ``|---|`` separator, one line per row), no trailing newline.

    ``rows`` is a DataFrame or dict rows; ``columns`` picks and orders the columns (default: the frame's
    columns, or the dict keys in first-seen order) and doubles as the header. A column a row lacks shows
    ``missing``, like None and NaN.
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    if columns is None:
        columns = list(rows.columns) if isinstance(rows, pd.DataFrame) else list(
            dict.fromkeys(key for record in records for key in record))

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [line(cell(c, missing=missing) for c in columns), "|" + "---|" * len(columns)]
    lines += [line(cell(record.get(c), float_format, missing) for c in columns) for record in records]
    return "\n".join(lines)


def spreadsheet_safe(value: object) -> object:
    """``value`` as a CSV report cell: text a spreadsheet would evaluate as a formula gets a leading apostrophe;
    numbers, plain text and non-text values come back unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_report_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (no index) as a CSV report with every text cell and header made ``spreadsheet_safe``."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]) and not pd.api.types.is_bool_dtype(safe[column]):
            safe[column] = safe[column].map(spreadsheet_safe)
    safe.columns = [spreadsheet_safe(column) for column in safe.columns]
    safe.to_csv(path, index=False)
    return Path(path)
