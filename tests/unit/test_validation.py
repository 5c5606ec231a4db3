"""Label validation: the reviewable GX suite, label-file errors, media probe columns and the report."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from affectflow.labels import CONTROL_CHARACTERS, EMOTIONS, REQUIRED_COLUMNS, TEXT_COLUMNS
from affectflow.validation import LabelFileError, read_labels, validate_batch, visible
from expectations import suite_dict

HEADER = "path,dataset,speaker,emotion,arousal,valence,intensity,split\n"


def batch_of(folder: Path, make_clip, body: str, header: str = HEADER, clips: int = 2) -> Path:
    """``folder`` with ``clips`` real 0.5 s 64x64 clips (clip0.mp4, ...) and the given labels.csv body."""
    for i in range(clips):
        make_clip(f"clip{i}.mp4", seconds=0.5, size=(64, 64), folder=folder, freq=300 + 100 * i)
    (folder / "labels.csv").write_text(header + body, encoding="utf-8")
    return folder


def expectations_of(kind: str) -> list[dict]:
    return [e for e in suite_dict("labels")["expectations"] if e["type"] == kind]


def test_suite_emotions_are_the_canonical_vocabulary() -> None:
    (emotion,) = [e for e in expectations_of("expect_column_values_to_be_in_set")
                  if e["kwargs"]["column"] == "emotion"]
    assert emotion["kwargs"]["value_set"] == list(EMOTIONS)


def test_suite_requires_the_contract_columns_and_explains_every_check() -> None:
    required = {e["kwargs"]["column"] for e in expectations_of("expect_column_to_exist")}
    assert required == set(REQUIRED_COLUMNS)
    assert all(e["meta"]["reason"] for e in suite_dict("labels")["expectations"])


def test_suite_refuses_control_characters_in_every_id_and_label() -> None:
    checks = expectations_of("expect_column_values_to_not_match_regex")
    assert {e["kwargs"]["column"]: e["kwargs"]["regex"] for e in checks} == dict.fromkeys(TEXT_COLUMNS,
                                                                                          CONTROL_CHARACTERS)


@pytest.mark.parametrize("column, value", [("speaker", "s\x001"), ("speaker", "s\n1"), ("speaker", "s\r1"),
                                           ("speaker", "s\t1"), ("speaker", "s\u20281"), ("split", "tr\x00ain"),
                                           ("path", "clip1.mp4\n")])
def test_control_characters_are_refused_with_the_row_named(tmp_path: Path, make_clip, column: str,
                                                           value: str) -> None:
    row = {"path": "clip1.mp4", "dataset": "demo", "speaker": "s2", "emotion": "calm", "split": "train"}
    row[column] = value
    body = "clip0.mp4,demo,s1,anger,,,,train\n" + f'"{row["path"]}",demo,"{row["speaker"]}",calm,,,,"{row["split"]}"\n'
    report = validate_batch(batch_of(tmp_path / "b", make_clip, body))
    named = [f for f in report.failures if f.column == column and "control character" in f.reason]
    assert not report.success and [(f.row, f.value) for f in named] == [(1, value)]
    markdown = report.to_markdown()
    assert visible(value) in markdown and value not in markdown  # shown escaped, never cutting the line


def test_control_characters_are_checked_without_the_optional_split_column(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s\x001,fear\n",
                     header="path,dataset,speaker,emotion\n", clips=1)
    report = validate_batch(batch)
    assert [(f.row, f.column) for f in report.failures] == [(0, "speaker")]


def test_good_batch_passes(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip,
                     "clip0.mp4,demo,007,anger,0.8,-0.6,1.0,train\nclip1.mp4,demo,008,calm,,,,\n")
    report = validate_batch(batch)
    assert (report.success, report.n_rows, report.failures, report.dataset) == (True, 2, [], "demo")
    assert read_labels(batch)["speaker"].tolist() == ["007", "008"]  # ids stay text
    assert "passed" in report.to_markdown()


def test_optional_columns_may_be_absent(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,fear\n", header="path,dataset,speaker,emotion\n",
                     clips=1)
    assert validate_batch(batch).success


@pytest.mark.parametrize("content, reason", [
    (None, "missing"),
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    ("path,dataset\nr\u00e9,x\n".encode("latin-1"), "not UTF-8"),
    (b'path,dataset,speaker,emotion\n"a.mp4,demo,s1,anger\n', "cannot be parsed"),
    (b"path,dataset,speaker,emotion\na.mp4,demo,s1,anger,extra,more\nb.mp4,demo,s1,anger\n", "cannot be parsed"),
    (b"path,dataset,speaker,emotion\n", "no rows"),
    (b"path,path,speaker,emotion\na,b,c,d\n", "repeats columns: path"),
    (b"path,dataset,\na,b,\n", "column without a name"),
])
def test_unreadable_label_files_raise_a_clear_error(tmp_path: Path, content: bytes | None, reason: str) -> None:
    if content is not None:
        (tmp_path / "labels.csv").write_bytes(content)
    with pytest.raises(LabelFileError, match=reason):
        read_labels(tmp_path)
    report = validate_batch(tmp_path)
    assert not report.success and report.n_rows == 0
    assert [(f.row, f.column) for f in report.failures] == [(None, None)] and reason in report.failures[0].reason


def test_every_failing_row_is_named_once_at_its_cause(tmp_path: Path, make_clip) -> None:
    outside = make_clip("outside.mp4", seconds=0.5, size=(64, 64))
    batch = batch_of(tmp_path / "b", make_clip, "".join([
        "clip0.mp4,demo,s1,anger,high,0.1,,\n",      # 0: arousal is not a number
        "clip1.mp4,demo,s1,anger,0.1,-1.5,,\n",      # 1: valence out of range
        "link.mp4,demo,s2,fear,,,,\n",               # 2: symlink leaving the batch
        "clips,demo,s2,fear,,,,\n",                  # 3: a folder, not a file
        "short.mp4,demo,s2,fear,,,-2,\n",            # 4: too short, negative intensity
        "clip0.mp4,Demo Set,,sad,,,,\n",             # 5: duplicate path, bad dataset name, no speaker, emotion
    ]))
    os.symlink(outside, batch / "link.mp4")
    (batch / "clips").mkdir()
    make_clip("short.mp4", seconds=0.08, size=(64, 64), folder=batch)
    report = validate_batch(batch)
    named = {(f.row, f.column) for f in report.failures}
    assert named == {(None, "dataset"), (0, "arousal"), (0, "path"), (1, "valence"), (2, "path"), (3, "path"),
                     (4, "path"), (4, "intensity"), (5, "path"), (5, "dataset"), (5, "speaker"),
                     (5, "emotion")}
    by_cell = {(f.row, f.column): f for f in report.failures}
    assert by_cell[(0, "arousal")].value == "high"
    assert "symlink" in by_cell[(2, "path")].reason
    assert "not a regular file" in by_cell[(3, "path")].reason
    assert "duration" in by_cell[(4, "path")].reason
    assert "Demo Set" in by_cell[(None, "dataset")].reason
    markdown = report.to_markdown()
    assert all(f"| {row} | {column} |" in markdown for row, column in named if row is not None)
    assert json.loads(json.dumps(report.to_dict(), default=str))["failures"][0]["row"] is None


def test_report_files_name_the_gx_result_and_its_data_docs(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,joy,,,,\nclip1.mp4,demo,s2,anger,,,,\n")
    report = validate_batch(batch, tmp_path / "gx")
    written = report.write(tmp_path / "out")
    assert written.read_text() == report.to_markdown() and "joy" in written.read_text()
    assert f"Data Docs: {report.data_docs}" in written.read_text()
    stored = json.loads((tmp_path / "out" / "report.json").read_text())
    assert stored["failures"][0]["row"] == 0
    assert (stored["data_docs"], stored["validation_result"]) == (report.data_docs, report.validation_result)
    assert (tmp_path / "gx" / "uncommitted" / "validations" / f"{report.validation_result}.json").is_file()


def test_history_is_kept_and_data_docs_show_each_result(tmp_path: Path, make_clip) -> None:
    root = tmp_path / "gx"
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,joy,,,,\nclip1.mp4,demo,s2,anger,,,,\n")
    first, second = validate_batch(batch, root), validate_batch(batch, root)
    results = sorted(p.relative_to(root / "uncommitted" / "validations").with_suffix("").as_posix()
                     for p in (root / "uncommitted" / "validations").rglob("*.json"))
    assert results == sorted([first.validation_result, second.validation_result]) and len(set(results)) == 2
    site = root / "uncommitted" / "data_docs" / "local_site"
    assert Path(second.data_docs).is_file() and Path(second.data_docs).is_relative_to(site)
    page = Path(first.data_docs).read_text(encoding="utf-8")
    assert "Failed" in page and "values must belong to this set" in page and ">joy<" in page  # the failing check
    index = (site / "index.html").read_text(encoding="utf-8")
    assert all(Path(r.data_docs).relative_to(site).as_posix() in index for r in (first, second))


def _project(root: Path):
    import great_expectations as gx

    return gx.get_context(mode="file", context_root_dir=root)


def test_a_checkpoint_per_dataset_stores_results_and_updates_data_docs(tmp_path: Path, make_clip) -> None:
    from great_expectations.checkpoint import UpdateDataDocsAction

    root = tmp_path / "gx"
    for dataset in ("demo", "other", "Not a name"):
        body = f"clip0.mp4,{dataset},s1,anger,,,,\nclip1.mp4,{dataset},s2,calm,,,,\n"
        validate_batch(batch_of(tmp_path / dataset, make_clip, body), root)
    context = _project(root)
    assert sorted(c.name for c in context.checkpoints.all()) == ["affectflow-demo", "affectflow-other", "labels"]
    checkpoint = context.checkpoints.get("affectflow-demo")
    assert [type(a) for a in checkpoint.actions] == [UpdateDataDocsAction]
    assert [(d.name, d.suite.name) for d in checkpoint.validation_definitions] == [("labels", "labels")]


def test_the_suite_files_replace_a_stored_suite_that_differs(tmp_path: Path, make_clip) -> None:
    """A project made when labels.json said otherwise (here: one emotion only) follows the file as it is now."""
    import great_expectations as gx

    root = tmp_path / "gx"
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,anger,,,,\nclip1.mp4,demo,s2,calm,,,,\n")
    assert validate_batch(batch, root).success
    context = _project(root)
    stored = context.suites.get("labels")
    stored.add_expectation(gx.expectations.ExpectColumnValuesToBeInSet(column="emotion", value_set=["anger"]))
    stored.save()
    assert len(context.suites.get("labels").expectations) == len(suite_dict("labels")["expectations"]) + 1
    assert validate_batch(batch, root).success
    assert len(context.suites.get("labels").expectations) == len(suite_dict("labels")["expectations"])


def test_projects_are_independent(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,anger,,,,\nclip1.mp4,demo,s2,calm,,,,\n")
    reports = [validate_batch(batch, tmp_path / name) for name in ("one", "two", "one")]
    assert [r.data_docs.startswith(str(tmp_path / name)) for r, name in zip(reports, ("one", "two", "one"))] == \
        [True] * 3
    assert [len(list((tmp_path / name / "uncommitted" / "validations").rglob("*.json")))
            for name in ("one", "two")] == [2, 1]


VALIDATE_THRICE = """
import sys
from pathlib import Path
from affectflow.validation import validate_batch
for _ in range(3):
    assert validate_batch(Path(sys.argv[1]), Path(sys.argv[2])).success
"""


@pytest.mark.slow
def test_two_processes_validating_into_one_project_at_once(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,anger,,,,\nclip1.mp4,demo,s2,calm,,,,\n")
    root = tmp_path / "gx"
    children = [subprocess.Popen([sys.executable, "-c", VALIDATE_THRICE, str(batch), str(root)],
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [(child.wait(timeout=900), child.stderr.read()) for child in children] == [(0, "")] * 2
    assert len(list((root / "uncommitted" / "validations").rglob("*.json"))) == 6
    assert [c.name for c in _project(root).checkpoints.all()] == ["affectflow-demo"]


VALIDATE_ONCE = """
import sys
from pathlib import Path
from affectflow.validation import validate_batch
report = validate_batch(Path(sys.argv[1]), Path(sys.argv[2]))
print(report.success, report.validation_result)
"""


def test_a_project_left_half_written_by_a_killed_process_is_rebuilt(tmp_path: Path, make_clip) -> None:
    """Suites, validation definitions, checkpoints and the project config are made from expectations/*.json:
    one that a kill cut short is rebuilt (a warning says so), the validation history stays."""
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,anger,,,,\nclip1.mp4,demo,s2,calm,,,,\n")
    root = tmp_path / "gx"
    assert validate_batch(batch, root).success
    cut = [root / "checkpoints" / "affectflow-demo.json", *sorted((root / "expectations").glob("*.json")),
           root / "great_expectations.yml"]
    for path in cut:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] + b"\x00{")
    again = subprocess.run([sys.executable, "-c", VALIDATE_ONCE, str(batch), str(root)], capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("True ") and "damaged files" in again.stderr
    assert len(list((root / "uncommitted" / "validations").rglob("*.json"))) == 2
    assert [c.name for c in _project(root).checkpoints.all()] == ["affectflow-demo"]


def test_damaged_video_stream_is_a_failure_not_a_crash(tmp_path: Path, make_clip) -> None:
    batch = batch_of(tmp_path / "b", make_clip, "clip0.mp4,demo,s1,anger,,,,\ndamaged.mp4,demo,s2,fear,,,,\n",
                     clips=1)
    data = make_clip("damaged.mp4", seconds=0.5, size=(64, 64), audio=False, folder=batch).read_bytes()
    start, stop = len(data) // 10, len(data) // 2  # inside the first frame's data
    (batch / "damaged.mp4").write_bytes(data[:start] + bytes(random.Random(7).randrange(256)
                                                              for _ in range(stop - start)) + data[stop:])
    (failure,) = validate_batch(batch).failures
    assert (failure.row, failure.column, failure.value) == (1, "path", "damaged.mp4")
    assert "video stream is damaged" in failure.reason
