"""Partial acceptance through the real command line: 3 broken clips among 50 are quarantined with their reasons,
47 accepted; fixed in quarantine and released, the 3 join the dataset, which then holds each of the 50 once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import cli_env

from affectflow.config import Paths
from affectflow.ingest import MANIFEST
from affectflow.packaging import PROJECT_ROOT
from affectflow.synth import write_synthetic_batch

pytestmark = pytest.mark.slow


def affectflow(home: Paths, *args: str) -> tuple[object, str]:
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=cli_env(home), cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_three_broken_of_fifty_are_quarantined_fixed_released_and_accepted_once(home: Paths) -> None:
    batch = home.inbox / "b1"
    labels = write_synthetic_batch(batch, clips=50, speakers=5, seed=11, seconds=0.6, size=48)
    garbage, truncated, mislabelled = labels["path"][[4, 17, 33]]
    originals = {name: (batch / name).read_bytes() for name in (garbage, truncated)}
    (batch / garbage).write_bytes(bytes(range(256)) * 20)
    (batch / truncated).write_bytes(originals[truncated][:200])
    broken = labels.copy()
    broken.loc[33, "emotion"] = "joy"
    broken.to_csv(batch / "labels.csv", index=False)

    [result], said = affectflow(home, "ingest")

    assert (result["status"], result["n_clips"], result["n_new"], result["n_quarantined"]) == ("accepted", 47, 47, 3)
    quarantine = home.quarantine / "b1"
    assert result["quarantine"] == str(quarantine) and "3 rows quarantined" in said
    docs = Path(result["data_docs"])  # the GX Data Docs page of this validation, in the home's GX project
    assert docs.is_file() and docs.is_relative_to(home.gx) and f"Data Docs: {docs}" in said
    reasons = " ".join(result["reasons"])
    assert "row 4, column path" in reasons and "row 17, column path" in reasons and "row 33, column emotion" in reasons
    kept = pd.read_csv(quarantine / "labels.csv", dtype=str)
    assert list(kept["path"]) == [garbage, truncated, mislabelled]
    moved = sorted(p.relative_to(quarantine).as_posix() for p in quarantine.rglob("*.mp4"))
    assert moved == sorted([garbage, truncated, mislabelled])  # each failing row with its media
    assert not any((home.datasets / "synthetic" / "b1" / name).exists() for name in moved)

    listed, _ = affectflow(home, "quarantine", "list")
    assert [(b["name"], b["rows"], b["problems"], b["split_from"]) for b in listed] == [("b1", 3, 3, "b1")]
    shown, report = affectflow(home, "quarantine", "show", "b1")
    assert "Partial acceptance" in report and "| 2 | emotion | joy |" in report and shown["folder"] == str(quarantine)
    assert shown["data_docs"] == str(docs) and f"Data Docs: {docs}" in report

    for name, data in originals.items():  # the fix: the original files, the right label
        (quarantine / name).write_bytes(data)
    kept.loc[2, "emotion"] = labels.loc[33, "emotion"]
    kept.to_csv(quarantine / "labels.csv", index=False)
    [released], said = affectflow(home, "quarantine", "release", "b1")

    assert (released["status"], released["n_new"], released["n_quarantined"]) == ("accepted", 3, 0)
    assert not quarantine.exists() and (home.datasets / "synthetic" / "b1-2" / "report.previous.md").is_file()
    manifest = pd.read_parquet(home.datasets / "synthetic" / MANIFEST)
    assert len(manifest) == 50 and manifest["clip_hash"].is_unique
    assert sorted(Path(p).name for p in manifest["path"]) == sorted(Path(p).name for p in labels["path"])
    nothing, _ = affectflow(home, "quarantine", "list")
    assert nothing == []
