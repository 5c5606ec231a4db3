"""Hostile batches through one real `affectflow ingest`: the store keeps real files, one label per clip content and
plain-text ids; a spreadsheet formula in an id reaches CSV reports neutralised, and the manifest keeps it as data.

Before: a batch folder that was a symlink was accepted (the store then held the symlink); a known clip with
another label was dropped as "duplicate" without a word about the conflict; a NUL or a newline in a speaker id
was accepted; a formula in a speaker id reached predictions.csv and groups.csv as it was.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectflow.config import Paths, TrainConfig
from affectflow.ingest import LINK_NAME, MANIFEST, ingest_inbox, load_dataset
from affectflow.synth import write_synthetic_batch
from affectflow.tables import spreadsheet_safe

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FORMULA = '=HYPERLINK("http://example.invalid/x","click")'


def relabel(batch: Path, row: int, **values: str) -> None:
    labels = pd.read_csv(batch / "labels.csv", dtype=str, keep_default_na=False)
    for column, value in values.items():
        labels.loc[row, column] = value
    labels.to_csv(batch / "labels.csv", index=False)


def hostile_inbox(home: Paths, outside: Path) -> dict[str, Path]:
    """``a-good`` (valid, ingested first: batches go in name order) and one batch per hostile case."""
    write_synthetic_batch(outside / "template", clips=6, speakers=1, seed=5, seconds=0.6, size=48)
    batches = {}
    for name in ("a-good", "c-conflict", "d-nul", "e-newline", "f-link-inside", "g-formula"):
        batches[name] = home.inbox / name
        shutil.copytree(outside / "template", batches[name])
    # c: row 0 is a-good's row 0 (same bytes) with another emotion; the others are a-good's own rows (duplicates)
    relabel(batches["c-conflict"], 0, emotion="calm")
    relabel(batches["d-nul"], 1, speaker="s\x00evil")
    relabel(batches["e-newline"], 2, speaker="s1\ninjected,line")
    clip = pd.read_csv(batches["f-link-inside"] / "labels.csv")["path"][3]
    (batches["f-link-inside"] / clip).unlink()
    (batches["f-link-inside"] / clip).symlink_to(outside / "template" / clip)
    write_synthetic_batch(batches["g-formula"], clips=6, speakers=1, seed=6, seconds=0.6, size=48)
    labels = pd.read_csv(batches["g-formula"] / "labels.csv", dtype=str)
    labels["speaker"] = FORMULA
    labels.to_csv(batches["g-formula"] / "labels.csv", index=False)
    write_synthetic_batch(outside / "linked", clips=6, speakers=1, seed=7, seconds=0.6, size=48)
    (home.inbox / "b-linked").symlink_to(outside / "linked", target_is_directory=True)
    return batches


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_hostile_batches_are_refused_with_reasons_and_the_store_stays_clean(home: Paths, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    batches = hostile_inbox(home, outside)
    originals = {name: files_of(folder) for name, folder in batches.items()}
    linked_before = files_of(outside / "linked")
    env = {**os.environ, "AFFECTFLOW_HOME": str(home.home), "PREFECT_HOME": str(home.prefect_home),
           "BENTOML_HOME": str(home.bentoml_home)}
    env.pop("PREFECT_API_URL", None)
    # policy whole: each hostile batch is refused as it came (partial acceptance: tests/unit/test_ingest.py)
    done = subprocess.run([sys.executable, "-m", "cli", "ingest", "--policy", "whole"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    results = {r["batch"]: r for r in json.loads(done.stdout.splitlines()[-1])}

    assert {name: r["status"] for name, r in results.items()} == {
        "a-good": "accepted", "b-linked": "quarantined", "c-conflict": "quarantined", "d-nul": "quarantined",
        "e-newline": "quarantined", "f-link-inside": "quarantined", "g-formula": "accepted"}
    reasons = {name: " ".join(r["reasons"]) for name, r in results.items()}
    assert "the batch folder is a symlink" in reasons["b-linked"]
    assert "label conflict" in reasons["c-conflict"] and "emotion 'anger'" in reasons["c-conflict"]
    assert "emotion 'calm'" in reasons["c-conflict"] and "as a-good/clips/" in reasons["c-conflict"]
    assert "row 1, column speaker" in reasons["d-nul"] and "control character" in reasons["d-nul"]
    assert "row 2, column speaker" in reasons["e-newline"] and "control character" in reasons["e-newline"]
    assert "row 3, column path" in reasons["f-link-inside"] and "is a symlink" in reasons["f-link-inside"]

    # the symlinked batch: nothing read or written through the link; the link itself kept in quarantine
    assert files_of(outside / "linked") == linked_before
    assert os.readlink(home.quarantine / "b-linked" / LINK_NAME) == str(outside / "linked")
    assert sorted(files_of(home.quarantine / "b-linked")) == ["report.json", "report.md"]
    # nothing lost: every quarantined batch whole, with its report; the store holds no symlink, no refused clip
    for name in ("c-conflict", "d-nul", "e-newline", "f-link-inside"):
        kept = files_of(home.quarantine / name)
        assert {k: kept[k] for k in originals[name]} == originals[name]
        assert "report.md" in kept
    report = (home.quarantine / "d-nul" / "report.md").read_text()
    assert "s\\x00evil" in report and "\x00" not in report
    store = home.datasets / "synthetic"
    assert not any(p.is_symlink() for p in home.datasets.rglob("*"))
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == ["a-good", "g-formula"]
    manifest = pd.read_parquet(store / MANIFEST)
    assert len(manifest) == 12 and manifest["clip_hash"].is_unique
    assert list(home.inbox.iterdir()) == []

    # the formula is data in the manifest (read back verbatim) and text in CSV reports
    frame = load_dataset("synthetic", home)
    assert (frame.loc[frame["batch"] == "g-formula", "speaker"] == FORMULA).all()
    from affectflow.crossval import CrossValidation, Fold, write_report
    from affectflow.evaluation import prediction_frame

    classes = tuple(sorted(frame["emotion"].unique()))
    probabilities = np.eye(len(classes))[[classes.index(e) for e in frame["emotion"]]]
    predictions = prediction_frame(frame, {"emotion": probabilities}, classes).assign(fold=1)
    fold = Fold(1, sorted(frame["speaker"].unique()), [], 0, 0, len(frame), 1, {"uar": 1.0})
    written = write_report(CrossValidation(classes, TrainConfig(), [fold], predictions), tmp_path / "cv")
    for name in ("predictions", "groups"):
        with open(written[name], newline="", encoding="utf-8") as handle:
            cells = [cell for row in csv.reader(handle) for cell in row]
        assert "'" + FORMULA in cells and FORMULA not in cells, name
        assert all(spreadsheet_safe(cell) == cell for cell in cells), name  # no cell a spreadsheet evaluates

    assert ingest_inbox(home) == []  # the next run: nothing pending, nothing to repair
