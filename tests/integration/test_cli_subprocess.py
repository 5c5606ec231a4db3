"""The ``affectflow`` command as a user runs it (real subprocesses)."""

import json
import os
import subprocess
import sys

from support import shared_data


def affectflow(*args: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "AFFECTFLOW_HOME": str(home.home)}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_datasets_import_emodb_writes_a_batch(home, tmp_path):
    source = shared_data("emodb")
    done = affectflow("datasets", "import", "emodb", str(source), "--out", str(tmp_path / "emodb-1"), "--link",
                      home=home)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["clips"] == 339 and result["speakers"] == 7 and len(result["emotions"]) == 7
    assert (tmp_path / "emodb-1" / "labels.csv").is_file()


def test_unknown_adapter_option_is_rejected(home, tmp_path):
    source = shared_data("emodb")
    done = affectflow("datasets", "import", "emodb", str(source), "--out", str(tmp_path / "x"), "--vote", "face",
                      home=home)
    assert done.returncode != 0 and "no option vote" in done.stderr
    assert not (tmp_path / "x").exists()


def test_preprocess_prints_one_line_per_clip_and_fails_on_bad_media(home, make_clip, tmp_path):
    good = make_clip("good.mp4", seconds=0.6, size=(64, 64))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    done = affectflow("preprocess", str(good), str(bad), "--face-backend", "none", home=home)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1
    assert lines[0]["ok"] and lines[0]["frames"] == 16 and lines[0]["audio_seconds"] > 0.5
    assert not lines[1]["ok"] and "bad.mp4" in lines[1]["error"]
    assert lines[-1]["summary"]
