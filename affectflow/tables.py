"""Markdown tables for reports: one cell per value, ``|`` and line breaks escaped, missing values as "-"."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

_PIPE = re.compile(r"(\\*)\|")


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
