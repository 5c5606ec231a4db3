"""Kill between the champion alias moving and its Bento being built: `affectflow models` shows the two apart,
`affectflow models reconcile` (and the start of `affectflow serve`) brings them together, and then
`affectflow predict` and the running service answer from the same model version.

The kill is real: a child process runs the command line and SIGKILLs itself the instant the champion alias has
moved (the ingest kill test's way to hit an exact point; a timed kill from outside lands anywhere else).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from support import cli_env

from affectflow.arrays import Arrays
from affectflow.config import Paths, PreprocessConfig, TrainConfig
from affectflow.evaluation import evaluate
from affectflow.packaging import PROJECT_ROOT, newest_bentos
from affectflow.predict import ModelCard
from affectflow.promotion import crown, package_champion
from affectflow.registry import champion, configure, log_training
from affectflow.reports import RunReport
from affectflow.training import train

pytestmark = pytest.mark.slow

PRE = PreprocessConfig(num_frames=4, frame_size=32, audio_seconds=0.5, face_backend="none")
CLASSES = ("anger", "happiness", "sadness")
NAME = "affectflow-toy"
READY_TIMEOUT_S = 90

# The command line, killed (SIGKILL, by itself) right after the champion alias moved: nothing after it runs.
KILLED_AFTER_ALIAS = """
import os, signal, sys
from affectflow import promotion, registry

def moved_then_killed(model):
    registry.set_champion(model)
    os.kill(os.getpid(), signal.SIGKILL)

promotion.set_champion = moved_then_killed
from cli.main import main
main(sys.argv[1:])
"""


def toy_arrays(n: int, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    mfcc = rng.normal(size=(n, PRE.audio_steps, PRE.n_mfcc)).astype("float32") + labels[:, None, None]
    inputs = {"frames": rng.integers(0, 256, (n, 4, 32, 32, 3), dtype=np.uint8), "mfcc": mfcc,
              "video_mask": np.ones((n, 1), "float32"), "audio_mask": np.ones((n, 1), "float32")}
    return Arrays(inputs, labels, np.stack([labels - 1.0, 1.0 - labels], axis=1).astype("float32") * 0.5)


def cli(home: Paths, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = cli_env(home)
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=900)
    assert not check or done.returncode == 0, done.stderr[-3000:]
    return done


def killed_after_alias(home: Paths, *args: str) -> None:
    env = cli_env(home)
    done = subprocess.run([sys.executable, "-c", KILLED_AFTER_ALIAS, *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def last_json(done: subprocess.CompletedProcess):
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def registry_with_two_versions(home: Paths) -> Paths:
    """Versions 1 and 2 of ``affectflow-toy`` registered; version 1 the champion, served by the newest Bento."""
    configure(home)
    config = replace(TrainConfig(), epochs=2, hidden_units=8, batch_size=8)
    result = train(toy_arrays(24, 0), toy_arrays(12, 1), CLASSES, config, progress=lambda _: None)
    test = toy_arrays(12, 2)
    result.metrics, result.confusion = evaluate(result.model, test, CLASSES)
    card = ModelCard(CLASSES, PRE, "multitask", dataset_version="v-test", dataset="toy")
    sample = {k: v[:2] for k, v in test.inputs.items()}
    first = log_training(result, card, TrainConfig(), "toy", sample, {}, RunReport())
    log_training(result, card, TrainConfig(), "toy", sample, {}, RunReport())
    crown(first, "the first model")
    package_champion("toy")
    assert newest_bentos()["toy"].model_version == f"{NAME}/1"
    return home


def test_a_kill_after_the_alias_moved_is_shown_and_reconciled(registry_with_two_versions: Paths):
    home = registry_with_two_versions
    killed_after_alias(home, "promote", "--dataset", "toy", "--version", "2")
    assert champion(NAME).version == "2"  # the alias moved ...
    assert newest_bentos()["toy"].model_version == f"{NAME}/1"  # ... and the Bento was never built

    shown = cli(home, "models")
    [row] = last_json(shown)
    assert row["agrees"] is False and row["champion"] == f"models:/{NAME}/2" and row["bento_model"] == f"models:/{NAME}/1"
    assert "MISMATCH" in shown.stderr and "affectflow models reconcile" in shown.stderr

    [done] = last_json(cli(home, "models", "reconcile"))
    assert done["built"] and done["champion"] == f"{NAME}/2" and done["served"] == f"{NAME}/2"
    assert newest_bentos()["toy"].model_version == f"{NAME}/2"
    [again] = last_json(cli(home, "models", "reconcile", "--dataset", "toy"))  # idempotent: nothing to build
    assert not again["built"] and again["bento"] == done["bento"] and "serves the champion" in again["note"]
    [row] = last_json(cli(home, "models"))
    assert row["agrees"] is True


def test_serve_repairs_a_kill_after_the_alias_moved_and_predict_agrees(registry_with_two_versions: Paths,
                                                                       make_clip, tmp_path: Path):
    home = registry_with_two_versions
    killed_after_alias(home, "promote", "--dataset", "toy", "--version", "2")
    assert newest_bentos()["toy"].model_version == f"{NAME}/1"

    port = free_port()
    env = cli_env(home)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--dataset", "toy", "--port", str(port)],
                                  env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            served = wait_for_metadata(server, url, log_path)
        finally:
            stop(server)
    assert "built" in log_path.read_text(errors="replace")  # serve said what it repaired
    clip = make_clip("clip.mp4", seconds=0.6, size=(64, 64))
    predicted = last_json(cli(home, "predict", str(clip)))
    assert served["model_version"] == predicted["model_version"] == f"{NAME}/2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(server: subprocess.Popen) -> None:
    """The server and its workers: the process group it leads."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass


def wait_for_metadata(server: subprocess.Popen, url: str, log_path: Path) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"serve exited with {server.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return httpx.post(f"{url}/metadata", timeout=30).json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready after {READY_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')[-3000:]}")
