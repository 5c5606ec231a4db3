"""The one Markdown table writer behind every report: shape, escaping, missing values, number formats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from affectflow.tables import cell, markdown_table, spreadsheet_safe, write_report_csv


def _cells(line: str) -> list[str]:
    """A table line's cells, splitting only on unescaped pipes."""
    assert line.startswith("| ") or line.startswith("|-")
    parts, current, chars = [], "", iter(line.strip()[1:-1])
    for char in chars:
        if char == "\\":
            current += char + next(chars)
        elif char == "|":
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def test_header_separator_and_rows_line_up():
    text = markdown_table([{"name": "a", "score": 0.5, "n": 3}, {"name": "b", "score": 0.25, "n": 10}])
    lines = text.split("\n")
    assert lines == ["| name | score | n |", "|---|---|---|", "| a | 0.500 | 3 |", "| b | 0.250 | 10 |"]
    assert {len(_cells(line)) for line in lines} == {3}
    assert not text.endswith("\n")


def test_columns_pick_and_order_and_a_missing_key_is_a_dash():
    rows = [{"b": 1, "a": "x"}, {"a": "y", "c": 2.0}]
    assert markdown_table(rows).split("\n")[0] == "| b | a | c |"  # first-seen order
    assert markdown_table(rows, ["a", "b"]).split("\n") == ["| a | b |", "|---|---|", "| x | 1 |", "| y | - |"]


def test_a_dataframe_keeps_integer_columns_whole_and_formats_floats():
    frame = pd.DataFrame({"view": ["all", "audio only"], "n": [30, 12], "uar": [0.91234, np.nan]})
    assert markdown_table(frame).split("\n")[2:] == ["| all | 30 | 0.912 |", "| audio only | 12 | - |"]
    assert markdown_table(frame, ["uar", "view"]).split("\n")[0] == "| uar | view |"


@pytest.mark.parametrize("value", [None, float("nan"), np.float32("nan"), pd.NA, pd.NaT])
def test_missing_values_show_a_dash_or_the_given_text(value):
    assert cell(value) == "-"
    assert markdown_table([{"x": value}], missing="").split("\n")[2] == "|  |"


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    (0.12345, ".3f", "0.123"), (0.12345, ".4f", "0.1235"), (np.float32(0.5), ".3f", "0.500"),
    (np.int64(7), ".3f", "7"), (3, ".4f", "3"), (True, ".3f", "True"), (1e-5, ".2e", "1.00e-05"),
])
def test_float_format_applies_to_floats_only(value, fmt, expected):
    assert cell(value, fmt) == expected
    assert markdown_table([{"v": value}], float_format=fmt).split("\n")[2] == f"| {expected} |"


@pytest.mark.parametrize(("text", "expected"), [
    ("a|b", r"a\|b"),
    ("two\nlines", "two lines"),
    ("crlf\r\nend", "crlf end"),
    (r"ends\|", r"ends\\\|"),  # the user's backslash stays text, the pipe stays escaped
    ("plain", "plain"),
])
def test_cell_text_escapes_pipes_and_line_breaks(text, expected):
    assert cell(text) == expected
    line = markdown_table([{"label": text, "n": 1}]).split("\n")[2]
    assert line == f"| {expected} | 1 |" and "\n" not in line
    assert _cells(line) == [expected, "1"]  # still two cells


def test_header_text_is_escaped_too():
    assert markdown_table([{"a|b": 1}]).split("\n")[0] == r"| a\|b |"


def test_no_rows_is_header_and_separator():
    assert markdown_table([], ["a", "b"]) == "| a | b |\n|---|---|"
    assert markdown_table(pd.DataFrame(columns=["a"])) == "| a |\n|---|"


@pytest.mark.parametrize("value, written", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"), ("+1+2", "'+1+2"), ("-1+2", "'-1+2"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("-", "'-"),
    ("-0.25", "-0.25"), ("+3", "+3"), ("1e-3", "1e-3"), ("s01", "s01"), ("a=b", "a=b"), ("", ""),
    (-0.25, -0.25), (None, None),
])
def test_spreadsheet_formulas_are_neutralised_numbers_kept(value, written):
    assert spreadsheet_safe(value) == written


def test_report_csv_neutralises_text_cells_and_headers_only(tmp_path):
    frame = pd.DataFrame({"speaker": ["=1+2", "s1", "-7"], "arousal": [-0.5, 0.25, -1.0], "n": [1, 2, 3],
                          "=cmd": ["x", "y", "z"]})
    path = write_report_csv(frame, tmp_path / "report.csv")
    back = pd.read_csv(path, dtype={"speaker": str})
    assert list(back.columns) == ["speaker", "arousal", "n", "'=cmd"]
    assert back["speaker"].tolist() == ["'=1+2", "s1", "-7"]  # "-7" is a number to a spreadsheet: harmless
    assert back["arousal"].tolist() == [-0.5, 0.25, -1.0] and back["n"].tolist() == [1, 2, 3]
    assert frame["speaker"].tolist() == ["=1+2", "s1", "-7"]  # the caller's frame is untouched
