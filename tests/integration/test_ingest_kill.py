"""Kill test: a real ingest process is SIGKILLed mid-way, re-run, and nothing is lost or duplicated."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from affectflow.config import Paths, get_paths
from affectflow.ingest import JOURNAL, MANIFEST, dataset_version, ingest_inbox, pending_batches

pytestmark = pytest.mark.slow

# The child optionally kills itself (a real SIGKILL) at one of the two instants where a batch is
# between places: its journal written but the folder not yet moved, or the folder moved into the
# store but its clips not yet in the manifest. Timed kills from outside land anywhere else. Policy whole: each
# batch moves as one folder (a split killed half-way: tests/unit/test_ingest.py).
RUN_INGEST = """
import os, signal, sys
from affectflow import ingest
from affectflow.config import get_paths

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "journal-written":      # the journal is in the inbox batch, the folder not yet moved
    write = ingest.write_atomic
    ingest.write_atomic = lambda target, data: (write(target, data), target.name == ingest.JOURNAL and die())
elif sys.argv[2] == "moved-not-recorded":  # the folder is in the store, its clips not yet in the manifest
    append = ingest._append
    ingest._append = lambda store, manifest, rows: die() if rows else append(store, manifest, rows)
ingest.ingest_inbox(get_paths(sys.argv[1]), progress=lambda done, total, r: print(done, r.batch, flush=True),
                    policy="whole")
"""
WRITTEN_BY_INGEST = {"report.md", "report.json", "ingest.json"}  # GX results and Data Docs: in the home's gx/
BATCHES = ("b1", "b2", "b3", "b4", "b5")
BAD = "b3"


def write_batches(inbox: Path, make_clip) -> None:
    """Five batches of two clips with distinct content; ``b3`` names an unknown emotion (quarantined)."""
    for number, name in enumerate(BATCHES):
        rows = ["path,dataset,speaker,emotion"]
        for i in range(2):
            make_clip(f"c{i}.mp4", seconds=0.4, size=(32, 32), folder=inbox / name,
                      freq=300 + 100 * (2 * number + i))
            emotion = "joy" if name == BAD and i else ["anger", "sadness"][i]
            rows.append(f"c{i}.mp4,demo,{name}-s{i},{emotion}")
        (inbox / name / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def originals(home: Paths) -> dict[tuple[str, str], str]:
    """(batch, file inside it) -> content hash for every original batch file, wherever its batch is now.

    Files ingestion adds (reports, journal, unfinished ``.tmp`` writes) are left out. A batch found in
    two places would appear under two names, so equality with the inbox before ingestion means every
    file is in exactly one place with its bytes unchanged.
    """
    stores = [p for p in home.datasets.iterdir() if p.is_dir()] if home.datasets.is_dir() else []
    found: dict[tuple[str, str], str] = {}
    for place in (home.inbox, home.quarantine, *stores):
        for batch in (p for p in place.iterdir() if p.is_dir()):
            for file in (p for p in batch.rglob("*") if p.is_file()):
                relative = file.relative_to(batch)
                if relative.parts[0] not in WRITTEN_BY_INGEST and not relative.name.startswith("."):
                    assert (batch.name, relative.as_posix()) not in found
                    found[(batch.name, relative.as_posix())] = sha256(file)
    return found


def killed_run(home: Paths, point: str) -> None:
    """Run ingestion in a real process and SIGKILL it at ``point``.

    ``after-report``/``mid-batch``: from outside, right after the first batch report or 0.15 s later;
    ``journal-written``/``moved-not-recorded``: the child kills itself at that instant of its first accept.
    """
    process = subprocess.Popen([sys.executable, "-c", RUN_INGEST, str(home.home), point], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        if point in ("after-report", "mid-batch"):
            first = process.stdout.readline()
            assert first.startswith("1 "), f"the ingest process reported nothing: {first!r}"
            time.sleep(0.15 if point == "mid-batch" else 0.0)
            process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=120)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ["after-report", "mid-batch", "journal-written", "moved-not-recorded"])
def test_killed_ingestion_loses_and_duplicates_nothing(point: str, tmp_path: Path, home: Paths,
                                                       make_clip) -> None:
    write_batches(tmp_path / "pristine", make_clip)
    shutil.copytree(tmp_path / "pristine", home.inbox, dirs_exist_ok=True)
    before = originals(home)

    killed_run(home, point)
    assert pending_batches(home.inbox), "the kill came after the last batch: nothing was interrupted"
    store = home.datasets / "demo"
    if point == "journal-written":
        assert (home.inbox / "b1" / JOURNAL).is_file() and not (store / "b1").exists()
    if point == "moved-not-recorded":
        assert (store / "b1" / JOURNAL).is_file() and not (store / MANIFEST).exists()
    assert originals(home) == before

    results = ingest_inbox(home, policy="whole")
    assert originals(home) == before and not pending_batches(home.inbox)
    assert all(r.status in ("accepted", "quarantined") for r in results)
    assert sorted(p.name for p in home.quarantine.iterdir()) == [BAD]
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == sorted(set(BATCHES) - {BAD})

    manifest = pd.read_parquet(store / MANIFEST)
    expected = {f"{batch}/{path}": digest for (batch, path), digest in before.items()
                if batch != BAD and path != "labels.csv"}
    assert sorted(manifest["path"]) == sorted(expected)  # each clip recorded once
    assert dict(zip(manifest["path"], manifest["clip_hash"])) == expected

    uninterrupted = get_paths(tmp_path / "other").ensure()
    shutil.copytree(tmp_path / "pristine", uninterrupted.inbox, dirs_exist_ok=True)
    ingest_inbox(uninterrupted, policy="whole")
    assert dataset_version("demo", home) == dataset_version("demo", uninterrupted)
