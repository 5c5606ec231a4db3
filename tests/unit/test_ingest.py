"""Ingest: inbox -> curated store or quarantine, with real GX validation, real clips and real files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from affectflow.config import Paths, get_paths
from affectflow.ingest import (
    LINK_NAME,
    MANIFEST,
    RUN_LOCK,
    UnknownDatasetError,
    dataset_version,
    ingest_batch,
    ingest_inbox,
    list_datasets,
    load_dataset,
)
from affectflow.validation import read_labels

FIELDS = ["path", "dataset", "speaker", "emotion", "arousal", "valence"]


def write_labels(batch: Path, rows: list[dict], fields: list[str] = FIELDS) -> None:
    with open(batch / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def make_batch(folder: Path, make_clip: Callable, n: int = 2, dataset: str = "demo", tone: int = 300) -> list[dict]:
    """A valid batch of ``n`` 0.5 s 64x64 clips (distinct tones, so distinct content); returns its rows."""
    rows = []
    for i in range(n):
        make_clip(f"clip{i}.mp4", seconds=0.5, size=(64, 64), folder=folder, freq=tone + 100 * i)
        rows.append({"path": f"clip{i}.mp4", "dataset": dataset, "speaker": f"s{i}",
                     "emotion": ["anger", "calm", "fear", "neutral"][i], "arousal": "0.5", "valence": "-0.25"})
    write_labels(folder, rows)
    return rows


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: the store must not change when a bad batch arrives."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_good_batch_is_accepted_with_a_version(home: Paths, make_clip) -> None:
    rows = make_batch(home.inbox / "b1", make_clip)
    result = ingest_batch(home.inbox / "b1", home)
    assert result.status == "accepted", result.reasons
    assert (result.dataset, result.n_clips, result.n_new) == ("demo", 2, 2)
    assert result.dataset_version == dataset_version("demo", home)
    assert result.dataset_version.startswith("v-") and len(result.dataset_version) == 14
    assert result.location == home.datasets / "demo" / "b1" and not (home.inbox / "b1").exists()
    assert result.report.is_file() and "passed" in result.report.read_text()
    manifest = pd.read_parquet(home.datasets / "demo" / MANIFEST)
    assert list(manifest["path"]) == ["b1/clip0.mp4", "b1/clip1.mp4"]
    assert list(manifest["speaker"]) == [r["speaker"] for r in rows]
    assert manifest["clip_hash"].str.len().eq(64).all() and manifest["clip_hash"].is_unique
    assert list(manifest["arousal"]) == [0.5, 0.5] and manifest["intensity"].isna().all()


def test_load_and_list_datasets(home: Paths, make_clip) -> None:
    make_batch(home.inbox / "b1", make_clip)
    ingest_batch(home.inbox / "b1", home)
    assert list_datasets(home) == ["demo"]
    frame = load_dataset("demo", home)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["path"])
    assert set(frame.columns) >= {"clip_hash", "batch", "speaker", "emotion", "arousal", "valence", "split"}
    with pytest.raises(UnknownDatasetError, match=r"'nope'.*available: demo"):
        load_dataset("nope", home)


def test_corpus_columns_beyond_the_contract_come_back_with_the_dataset(home: Paths, make_clip) -> None:
    """The manifest holds the contract; a corpus's own columns (CREMA-D sex, age) stay in the stored batch's
    labels.csv and come back with ``load_dataset``, for metrics per group."""
    rows = make_batch(home.inbox / "b1", make_clip)
    demographics = [{"sex": "female", "age": "34"}, {"sex": "male", "age": ""}]
    write_labels(home.inbox / "b1", [r | d for r, d in zip(rows, demographics)], FIELDS + ["sex", "age"])
    ingest_batch(home.inbox / "b1", home)
    assert {"sex", "age"}.isdisjoint(pd.read_parquet(home.datasets / "demo" / MANIFEST).columns)
    frame = load_dataset("demo", home).set_index("speaker")
    assert frame.loc["s0", "sex"] == "female" and frame.loc["s0", "age"] == "34"
    assert frame.loc["s1", "sex"] == "male" and pd.isna(frame.loc["s1", "age"])


def test_a_missing_batch_folder_is_an_error_not_a_new_folder(home: Paths) -> None:
    with pytest.raises(FileNotFoundError, match="no batch folder"):
        ingest_batch(home.inbox / "ghost", home)
    assert not (home.inbox / "ghost").exists() and not any(home.quarantine.iterdir())


def _unknown_emotion(batch: Path, rows: list[dict]) -> None:
    rows[1]["emotion"] = "joy"
    write_labels(batch, rows)


def _arousal_out_of_range(batch: Path, rows: list[dict]) -> None:
    rows[1]["arousal"] = "1.5"
    write_labels(batch, rows)


def _missing_speaker_column(batch: Path, rows: list[dict]) -> None:
    write_labels(batch, rows, [f for f in FIELDS if f != "speaker"])


def _duplicate_path(batch: Path, rows: list[dict]) -> None:
    rows[1]["path"] = rows[0]["path"]
    write_labels(batch, rows)


def _parent_path(batch: Path, rows: list[dict]) -> None:
    shutil.copy(batch / "clip1.mp4", batch.parent / "x.mp4")
    rows[1]["path"] = "../x.mp4"
    write_labels(batch, rows)


def _absolute_path(batch: Path, rows: list[dict]) -> None:
    rows[1]["path"] = str((batch / "clip1.mp4").resolve())
    write_labels(batch, rows)


def _missing_media(batch: Path, rows: list[dict]) -> None:
    rows[1]["path"] = "not_there.mp4"
    write_labels(batch, rows)


def _garbage_video(batch: Path, rows: list[dict]) -> None:
    (batch / "clip1.mp4").write_bytes(bytes(range(256)) * 40)


def _zero_length(batch: Path, rows: list[dict]) -> None:
    (batch / "clip1.mp4").write_bytes(b"")


def _latin1_csv(batch: Path, rows: list[dict]) -> None:
    rows[1]["speaker"] = "Jérôme"
    text = "path,dataset,speaker,emotion\n" + "".join(
        f"{r['path']},{r['dataset']},{r['speaker']},{r['emotion']}\n" for r in rows)
    (batch / "labels.csv").write_bytes(text.encode("latin-1"))


def _empty_csv(batch: Path, rows: list[dict]) -> None:
    (batch / "labels.csv").write_bytes(b"")


def _control_character(character: str) -> Callable[[Path, list[dict]], None]:
    def plant(batch: Path, rows: list[dict]) -> None:
        rows[1]["speaker"] = f"s{character}1"
        write_labels(batch, rows)
    return plant


def _symlinked_clip(batch: Path, rows: list[dict]) -> None:
    outside = batch.parent / "outside.mp4"
    (batch / "clip1.mp4").rename(outside)
    (batch / "clip1.mp4").symlink_to(outside)


def _symlinked_labels(batch: Path, rows: list[dict]) -> None:
    (batch / "labels.csv").rename(batch.parent / "outside.csv")
    (batch / "labels.csv").symlink_to(batch.parent / "outside.csv")


def _stray_symlink(batch: Path, rows: list[dict]) -> None:
    (batch / "notes").symlink_to("/etc")  # not named by labels.csv: the store would still hold it


def _conflict_in_batch(batch: Path, rows: list[dict]) -> None:
    shutil.copy(batch / "clip0.mp4", batch / "clip1.mp4")  # same content as row 0 ...
    rows[1]["speaker"] = rows[0]["speaker"]  # ... same speaker, another emotion
    write_labels(batch, rows)


def _conflict_with_store(batch: Path, rows: list[dict]) -> None:
    shutil.copy(batch.parent.parent / "datasets" / "demo" / "good" / "clip0.mp4", batch / "clip1.mp4")
    rows[1]["speaker"] = "s0"  # the stored clip's speaker; its emotion there is anger, here calm
    write_labels(batch, rows)


BAD_BATCHES = {
    "unknown emotion": (_unknown_emotion, 1, "emotion", "canonical vocabulary"),
    "arousal 1.5": (_arousal_out_of_range, 1, "arousal", "[-1, 1]"),
    "missing column speaker": (_missing_speaker_column, None, "speaker", "required column 'speaker' is missing"),
    "duplicate path": (_duplicate_path, 1, "path", "listed more than once"),
    "parent path": (_parent_path, 1, "path", "contains '..'"),
    "absolute path": (_absolute_path, 1, "path", "absolute path"),
    "missing media file": (_missing_media, 1, "path", "no such file"),
    "garbage video": (_garbage_video, 1, "path", "no decodable video or audio"),
    "zero-length file": (_zero_length, 1, "path", "0 bytes"),
    "non-UTF-8 csv": (_latin1_csv, None, None, "not UTF-8"),
    "empty csv": (_empty_csv, None, None, "labels.csv is empty"),
    "NUL in speaker": (_control_character("\x00"), 1, "speaker", "control character"),
    "newline in speaker": (_control_character("\n"), 1, "speaker", "control character"),
    "DEL in speaker": (_control_character("\x7f"), 1, "speaker", "control character"),
    "symlinked clip": (_symlinked_clip, 1, "path", "is a symlink"),
    "symlinked labels.csv": (_symlinked_labels, None, None, "labels.csv is a symlink"),
    "stray symlink": (_stray_symlink, None, None, "holds 1 symlink(s) that no row names"),
    "label conflict in the batch": (_conflict_in_batch, 1, "emotion", "in row 0 of this batch (clip0.mp4)"),
    "label conflict with the store": (_conflict_with_store, 1, "emotion", "in dataset demo as good/clip0.mp4"),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_batch_is_quarantined_with_a_report(case: str, home: Paths, make_clip) -> None:
    """Policy ``whole``: any failure quarantines the batch as it came."""
    plant, row, column, reason = BAD_BATCHES[case]
    make_batch(home.inbox / "good", make_clip, tone=900)
    ingest_batch(home.inbox / "good", home)
    store_before = snapshot(home.datasets)

    batch = home.inbox / "b1"
    plant(batch, make_batch(batch, make_clip))
    files_before = snapshot(batch)
    result = ingest_batch(batch, home, policy="whole")

    assert result.status == "quarantined" and result.n_new == 0 and result.dataset_version is None
    assert result.location == home.quarantine / "b1" and not batch.exists()
    failures = json.loads((result.location / "report.json").read_text())["failures"]
    assert any(f["row"] == row and f["column"] == column and reason in f["reason"] for f in failures), failures
    markdown = result.report.read_text()
    assert result.report == result.location / "report.md" and reason in markdown
    assert f"| {'file' if row is None else row} | {column or ''} |" in markdown
    assert any(reason in text for text in result.reasons)
    files_after = snapshot(result.location)
    assert {name: files_after[name] for name in files_before} == files_before  # nothing lost or altered
    assert snapshot(home.datasets) == store_before


def test_reingesting_the_same_content_adds_nothing(home: Paths, make_clip, tmp_path: Path) -> None:
    make_batch(tmp_path / "original", make_clip)
    shutil.copytree(tmp_path / "original", home.inbox / "b1")
    first = ingest_batch(home.inbox / "b1", home)
    manifest = (home.datasets / "demo" / MANIFEST).read_bytes()

    shutil.copytree(tmp_path / "original", home.inbox / "b1")
    again = ingest_batch(home.inbox / "b1", home)
    assert again.status == "duplicate" and (again.n_clips, again.n_new) == (2, 0)
    assert again.dataset_version == first.dataset_version == dataset_version("demo", home)
    assert (home.datasets / "demo" / MANIFEST).read_bytes() == manifest
    assert again.location == home.datasets / "demo" / "b1-2"  # kept, never overwriting b1
    assert (again.location / "clip0.mp4").read_bytes() == (first.location / "clip0.mp4").read_bytes()


def test_partly_known_batch_adds_only_new_clips(home: Paths, make_clip, tmp_path: Path) -> None:
    make_batch(home.inbox / "b1", make_clip)
    first = ingest_batch(home.inbox / "b1", home)
    batch = home.inbox / "b2"
    shutil.copytree(first.location, batch, ignore=shutil.ignore_patterns("report.*", "ingest.json"))
    rows = make_batch(tmp_path / "other", make_clip, n=3)
    shutil.copy(tmp_path / "other" / "clip2.mp4", batch / "clip2.mp4")
    write_labels(batch, rows)

    result = ingest_batch(batch, home)
    assert result.status == "accepted" and (result.n_clips, result.n_new) == (3, 1)
    assert "2 of 3 clips were already" in result.reasons[0]
    assert list(load_dataset("demo", home)["batch"]) == ["b1", "b1", "b2"]
    assert result.dataset_version != first.dataset_version


def test_inbox_is_ingested_in_order_with_progress(home: Paths, make_clip) -> None:
    make_batch(home.inbox / "b2", make_clip, tone=1200)
    make_batch(home.inbox / "b1", make_clip)
    make_batch(home.inbox / "b3", make_clip, dataset="other", tone=2000)
    (home.inbox / "b3" / "labels.csv").write_bytes(b"")
    (home.inbox / ".uploading").mkdir()
    seen = []
    results = ingest_inbox(home, progress=lambda done, total, r: seen.append((done, total, r.batch)))
    assert [(r.batch, r.status) for r in results] == [("b1", "accepted"), ("b2", "accepted"),
                                                      ("b3", "quarantined")]
    assert seen == [(1, 3, "b1"), (2, 3, "b2"), (3, 3, "b3")]
    assert sorted(p.name for p in home.inbox.iterdir()) == [".uploading"]
    assert len(load_dataset("demo", home)) == 4 and list_datasets(home) == ["demo"]


def test_interrupted_ingest_is_completed_by_the_next_run(home: Paths, make_clip) -> None:
    """The state a kill leaves between moving a batch into the store and rewriting the manifest."""
    make_batch(home.inbox / "b1", make_clip)
    ingest_batch(home.inbox / "b1", home)
    manifest_path = home.datasets / "demo" / MANIFEST
    after_b1 = manifest_path.read_bytes()
    make_batch(home.inbox / "b2", make_clip, tone=1500)
    complete = ingest_batch(home.inbox / "b2", home)
    manifest_path.write_bytes(after_b1)  # b2 sits in the store, its clips missing from the manifest

    assert ingest_inbox(home) == []
    frame = load_dataset("demo", home)
    assert list(frame["batch"]) == ["b1", "b1", "b2", "b2"]
    assert dataset_version("demo", home) == complete.dataset_version


def test_name_collisions_get_a_suffix(home: Paths, make_clip) -> None:
    for tone in (300, 1300):
        make_batch(home.inbox / "b1", make_clip, tone=tone)
        ingest_batch(home.inbox / "b1", home)
    for _ in range(2):
        make_batch(home.inbox / "b1", make_clip, dataset="demo", tone=3000)
        (home.inbox / "b1" / "labels.csv").write_bytes(b"")
        ingest_batch(home.inbox / "b1", home)
    assert sorted(p.name for p in (home.datasets / "demo").iterdir() if p.is_dir()) == ["b1", "b1-2"]
    assert sorted(p.name for p in home.quarantine.iterdir()) == ["b1", "b1-2"]
    assert list(load_dataset("demo", home)["batch"]) == ["b1", "b1", "b1-2", "b1-2"]


def test_two_homes_never_interfere(tmp_path: Path, make_clip) -> None:
    first, second = get_paths(tmp_path / "h1").ensure(), get_paths(tmp_path / "h2").ensure()
    make_batch(tmp_path / "batch", make_clip)
    shutil.copytree(tmp_path / "batch", first.inbox / "b1")
    ingest_inbox(first)
    assert list_datasets(second) == [] and snapshot(second.home) == {}
    shutil.copytree(tmp_path / "batch", second.inbox / "b1")
    result = ingest_inbox(second)[0]
    assert result.status == "accepted"  # not a duplicate of the other home's clips
    assert result.dataset_version == dataset_version("demo", first)
    assert len(load_dataset("demo", first)) == len(load_dataset("demo", second)) == 2


def test_a_symlinked_batch_folder_is_refused_unread(home: Paths, make_clip, tmp_path: Path) -> None:
    make_batch(home.inbox / "good", make_clip, tone=900)
    ingest_batch(home.inbox / "good", home)
    store_before = snapshot(home.datasets)
    elsewhere = tmp_path / "elsewhere"
    make_batch(elsewhere, make_clip)
    elsewhere_before = snapshot(elsewhere)
    (home.inbox / "linked").symlink_to(elsewhere, target_is_directory=True)

    (result,) = ingest_inbox(home)
    assert (result.batch, result.status, result.n_new) == ("linked", "quarantined", 0)
    assert result.location == home.quarantine / "linked" and not result.location.is_symlink()
    assert "is a symlink" in result.reasons[0] and str(elsewhere) in result.reasons[0]
    assert sorted(p.name for p in result.location.iterdir()) == sorted([LINK_NAME, "report.json", "report.md"])
    assert os.readlink(result.location / LINK_NAME) == str(elsewhere)  # kept as it was, not followed
    assert snapshot(elsewhere) == elsewhere_before  # nothing written through the link (no report there)
    assert snapshot(home.datasets) == store_before and not any(home.inbox.iterdir())
    assert not any(p.is_symlink() for p in home.datasets.rglob("*"))
    assert ingest_inbox(home) == []  # handled once


HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.truncate(0)
handle.write("pid 4242, since a moment\\n")
handle.flush()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_second_ingest_waits_for_the_one_running(home: Paths, make_clip) -> None:
    """Another process holds the home's ingest lock (as a running ingest does): this one says whom it waits for,
    waits, then ingests; a killed holder would release the lock the same way (the kernel's flock)."""
    make_batch(home.inbox / "b1", make_clip)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(home.home / RUN_LOCK), "1.5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        said: list[str] = []
        started = time.monotonic()
        results = ingest_inbox(home, waiting=said.append)
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
        holder.stdout.close()
    assert len(said) == 1 and "pid 4242" in said[0] and "waiting" in said[0]
    assert waited > 0.5 and [r.status for r in results] == ["accepted"]
    assert (home.home / RUN_LOCK).read_text() == ""  # the holder line goes with the holder


ROW_CASES = [case for case, (_, row, _, _) in BAD_BATCHES.items() if row is not None]
WRITTEN_BY_INGEST = {"labels.csv", "report.md", "report.json", "partial.json", "ingest.json"}


def submitted_files(folder: Path) -> dict[str, bytes]:
    return {name: data for name, data in snapshot(folder).items() if name not in WRITTEN_BY_INGEST}


@pytest.mark.parametrize("case", ROW_CASES)
def test_failing_rows_are_split_off_and_every_file_ends_in_one_place(case: str, home: Paths, make_clip) -> None:
    """Policy ``partial`` (the default): rows at fault and their media go to quarantine, the rest is accepted;
    rows that share a file, or conflict with each other, go together."""
    plant, _, column, reason = BAD_BATCHES[case]
    make_batch(home.inbox / "good", make_clip, tone=900)
    ingest_batch(home.inbox / "good", home)
    batch = home.inbox / "b1"
    plant(batch, make_batch(batch, make_clip))
    files_before = submitted_files(batch)

    result = ingest_batch(batch, home)

    parts = [submitted_files(place) for place in (result.location, result.quarantine) if place is not None]
    assert not set(parts[0]) & set(parts[-1]) or len(parts) == 1
    assert {name: data for part in parts for name, data in part.items()} == files_before  # each file once
    assert not batch.exists()
    if case in ("duplicate path", "label conflict in the batch"):  # no row is good on its own
        assert result.status == "quarantined" and result.location == home.quarantine / "b1"
        return
    assert (result.status, result.n_clips, result.n_new, result.n_quarantined) == ("accepted", 1, 1, 1)
    assert (result.location, result.quarantine) == (home.datasets / "demo" / "b1", home.quarantine / "b1")
    failures = json.loads((result.quarantine / "report.json").read_text())["failures"]
    assert any(f["row"] == 0 and f["column"] == column and reason in f["reason"] for f in failures), failures
    assert len(read_labels(result.quarantine)) == 1 and len(read_labels(result.location)) == 1
    accounting = json.loads((result.quarantine / "partial.json").read_text())
    assert (accounting["accepted_rows"], accounting["quarantined_rows"]) == ([0], [1])
    assert json.loads((result.location / "partial.json").read_text()) == accounting
    manifest = pd.read_parquet(home.datasets / "demo" / MANIFEST)
    assert list(manifest["path"]) == ["good/clip0.mp4", "good/clip1.mp4", "b1/clip0.mp4"]
    assert "Partial acceptance" in result.report.read_text() and "passed" in result.report.read_text()
    assert any("1 of 2 rows failed and were quarantined in" in reason for reason in result.reasons)


def test_a_split_killed_half_way_is_completed_by_the_next_run(home: Paths, make_clip) -> None:
    """The plan is written before anything moves: a run killed after the first move leaves a state that the
    next ingest completes, each file in one place."""
    batch = home.inbox / "b1"
    rows = make_batch(batch, make_clip, n=4)
    (batch / "clip1.mp4").write_bytes(b"")
    (batch / "clip3.mp4").write_bytes(b"")
    files_before = submitted_files(batch)
    code = (f"import os, affectflow.ingest as ingest\n"
            f"from affectflow.config import Paths\n"
            f"rename = os.rename\n"
            f"def die(a, b):\n    rename(a, b)\n    os._exit(9)\n"
            f"ingest.os.rename = die\n"
            f"ingest.ingest_batch(Path({str(batch)!r}), Paths(Path({str(home.home)!r})))\n")
    killed = subprocess.run([sys.executable, "-c", "from pathlib import Path\n" + code], capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert (batch / ".split-plan.json").is_file() and len(list(batch.glob("*.mp4"))) == 3  # one moved

    [result] = ingest_inbox(home)

    assert (result.status, result.n_clips, result.n_quarantined) == ("accepted", 2, 2)
    assert not (batch / ".split-plan.json").exists() and not batch.exists()
    parts = [submitted_files(result.location), submitted_files(result.quarantine)]
    assert {**parts[0], **parts[1]} == files_before and not set(parts[0]) & set(parts[1])
    assert [r["speaker"] for r in read_labels(result.quarantine).to_dict("records")] == [rows[1]["speaker"],
                                                                                         rows[3]["speaker"]]
    assert len(pd.read_parquet(home.datasets / "demo" / MANIFEST)) == 2
