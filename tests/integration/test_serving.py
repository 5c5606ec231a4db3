"""The serving path for real: the BentoML model store, a `bentoml serve` process over HTTP, a built Bento."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from affectflow.arrays import TRAINING_INPUTS
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import blank_features, stack_inputs
from affectflow.model import build_model
from affectflow.packaging import (
    BENTO_MODEL_NAME,
    MODEL_TAG_ENV,
    PROJECT_ROOT,
    SERVICE_IMPORT,
    bento_store,
    build_bento,
    model_store,
    save_to_bentoml,
    serve_command,
)
from affectflow.predict import ModelCard, Predictor

CLASSES = ("anger", "happiness", "sadness")
READY_TIMEOUT_S = 90


def save_model(model_version: str) -> str:
    """A small untrained multitask model saved to the current BentoML store; returns its tag."""
    cfg = PreprocessConfig()
    shapes = {name: array.shape[1:] for name, array in stack_inputs([blank_features(cfg)], TRAINING_INPUTS).items()}
    model = build_model(CLASSES, shapes, TrainConfig(hidden_units=16))
    card = ModelCard(CLASSES, cfg, "multitask", model_version=model_version, dataset_version="test-ds")
    return save_to_bentoml(model, card)


@pytest.fixture
def store(home, monkeypatch: pytest.MonkeyPatch):
    """The test home with BentoML's store inside it (BENTOML_HOME may point elsewhere in this process)."""
    monkeypatch.setenv("BENTOML_HOME", str(home.bentoml_home))
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(home, **extra: str) -> dict[str, str]:
    """The server's environment: the test home (and the session's numba cache, from conftest)."""
    return {**os.environ, "AFFECTFLOW_HOME": str(home.home), "BENTOML_HOME": str(home.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true", **extra}


def log_tail(log_path: Path) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])


def wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"server not ready after {READY_TIMEOUT_S} s:\n{log_tail(log_path)}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers: the whole process group it leads."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def serving(cmd: list[str], port: int, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run a `bentoml serve` command until the block ends; yields its base URL once /readyz answers."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(proc, url, log_path)
            yield url
        finally:
            stop(proc)


def upload(url: str, content: bytes, content_type: str = "application/octet-stream") -> httpx.Response:
    """A multipart upload as curl sends it: ``curl -F video=@clip.mp4 URL/predict``."""
    return httpx.post(f"{url}/predict", files={"video": ("clip.mp4", content, content_type)}, timeout=60)


def test_saved_model_carries_its_card_and_loads_for_prediction(store, make_clip):
    tag = save_model("v1")

    stored = model_store().get(f"{BENTO_MODEL_NAME}:latest")
    assert str(stored.tag) == tag
    assert stored.info.labels["model_version"] == "v1"
    assert stored.info.labels["preprocess"] == PreprocessConfig().hash()
    predictor = Predictor.from_dir(stored.path, stored.info.metadata)
    assert predictor.card.classes == CLASSES
    result = predictor.predict_clip(make_clip("clip.mp4"))
    assert result["emotion"] in CLASSES and result["model_version"] == "v1"


@pytest.mark.slow
def test_served_model_answers_uploads_and_rejects_unusable_files(store, make_clip, tmp_path):
    tag = save_model("v1")
    clip = make_clip("clip.mp4", seconds=1.0).read_bytes()
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE_IMPORT, "--host", "127.0.0.1", "--port", str(port)]

    with serving(cmd, port, server_env(store, **{MODEL_TAG_ENV: tag}), tmp_path / "serve.log") as url:
        for content_type in ("application/octet-stream", "video/mp4"):
            response = upload(url, clip, content_type)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["emotion"] in CLASSES
            assert set(body["probabilities"]) == set(CLASSES)
            assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert -1.0 <= body["arousal"] <= 1.0 and -1.0 <= body["valence"] <= 1.0
            assert body["model_version"] == "v1"
            assert body["modalities"] == {"video": True, "audio": True}

        garbage = upload(url, os.urandom(4096))
        assert garbage.status_code == 400
        assert "not a usable video" in garbage.json()["error"]

        empty = upload(url, b"")
        assert empty.status_code == 400
        assert "empty" in empty.json()["error"]

        card = httpx.post(f"{url}/metadata", timeout=10).json()
        assert card["classes"] == list(CLASSES) and card["model_tag"] == tag
        assert card["model_version"] == "v1" and card["dataset_version"] == "test-ds"


@pytest.mark.slow
def test_bento_keeps_serving_its_pinned_model_after_newer_ones(store, tmp_path):
    pinned = save_model("v1")
    bento_tag = build_bento(f"{BENTO_MODEL_NAME}:latest")
    newer = save_model("v2")

    bento = bento_store().get(bento_tag)
    assert [str(model.tag) for model in bento.info.all_models] == [pinned]
    port = free_port()
    env = server_env(store, **{MODEL_TAG_ENV: newer})
    with serving(serve_command(bento_tag, port), port, env, tmp_path / "serve.log") as url:
        card = httpx.post(f"{url}/metadata", timeout=10).json()
    assert card["model_tag"] == pinned and card["model_version"] == "v1"
