"""The feature cache after real faults, through real `affectflow preprocess` processes: a write killed mid-way
leaves no record (only a temporary, cleaned once stale), and damaged records are found, recomputed and reported.

Before: a truncated record failed its clip on every later run (``BadZipFile``) and was never recomputed; a
record damaged inside its frames passed (only three small arrays were read) and failed training later, at
``load_features``; temporaries of killed writes stayed for ever.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from affectflow.cache import TEMP_GRACE_S
from affectflow.config import Paths, preprocessing
from affectflow.features import load_features

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PREPROCESS = ["preprocess", "--face-backend", "none"]

# The CLI's preprocess, SIGKILLed by itself inside the write of its ``kill_at``-th record, after the first member
# of the zip went to disk: the instant a power cut or an OOM kill would leave half a file.
KILLED_WRITE = """
import os, signal, sys
import numpy as np
from affectflow.features import OPTIONAL_ARRAYS, _ARRAYS
from cli.main import main

write, members, kill_at = np.lib.format.write_array, [], int(sys.argv[1])
per_record = len(_ARRAYS) + len(OPTIONAL_ARRAYS) + 4  # save_features' arrays, then masks, duration and hash

def dying(*args, **kwargs):
    write(*args, **kwargs)
    members.append(1)
    if len(members) == (kill_at - 1) * per_record + 1:
        os.kill(os.getpid(), signal.SIGKILL)

np.lib.format.write_array = dying
main(sys.argv[2:])
"""


def preprocess(home: Paths, clips: list[Path], *prefix: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AFFECTFLOW_HOME": str(home.home)}
    return subprocess.run([sys.executable, *(prefix or ("-m", "cli")), *PREPROCESS, *map(str, clips)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)


def lines(done: subprocess.CompletedProcess) -> tuple[list[dict], dict]:
    *per_clip, summary = [json.loads(line) for line in done.stdout.splitlines()]
    return per_clip, summary


def test_killed_writes_and_damaged_records_are_repaired_by_the_next_run(home: Paths, make_clip,
                                                                        tmp_path: Path) -> None:
    clips = [make_clip(f"c{i}.mp4", seconds=0.8, size=(64, 64), folder=tmp_path / "clips", freq=300 + 150 * i)
             for i in range(4)]
    folder = home.features / preprocessing("none").hash()

    killed = preprocess(home, clips, "-c", KILLED_WRITE, "3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (temporary,) = folder.glob(".*.tmp")
    assert len(list(folder.glob("*.npz"))) == 2  # two records done; the third, cut mid-write, never appears
    stale = time.time() - TEMP_GRACE_S - 60  # as if the kill happened half an hour ago
    os.utime(temporary, (stale, stale))

    first = preprocess(home, clips)
    assert first.returncode == 0, first.stderr[-3000:]
    per_clip, summary = lines(first)
    assert [line["cached"] for line in per_clip] == [True, True, False, False]
    assert (summary["temporaries_removed"], summary["repaired"], summary["ok"]) == (1, 0, 4)
    assert not temporary.exists()
    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)

    records = [Path(line["record"]) for line in per_clip]
    records[0].write_bytes(records[0].read_bytes()[:1000])  # truncated
    data = records[1].read_bytes()
    records[1].write_bytes(data[:len(data) // 3] + bytes([data[len(data) // 3] ^ 0xFF]) + data[len(data) // 3 + 1:])

    again = preprocess(home, clips)
    assert again.returncode == 0, again.stderr[-3000:]
    per_clip, summary = lines(again)
    assert [(line["ok"], line["cached"], line["repaired"]) for line in per_clip] == [
        (True, False, True), (True, False, True), (True, True, False), (True, True, False)]
    assert (summary["repaired"], summary["computed"], summary["failed"]) == (2, 2, 0)
    assert "2 damaged records found; 2 recomputed" in again.stderr
    for record in records:  # whole again, and what extraction gives
        fresh, original = load_features(record), load_features(pristine / record.name)
        np.testing.assert_array_equal(fresh.frames, original.frames)
        np.testing.assert_array_equal(fresh.mfcc, original.mfcc)

    _, summary = lines(preprocess(home, clips))
    assert (summary["cached"], summary["repaired"], summary["temporaries_removed"]) == (4, 0, 0)
