"""A Bento runs outside this venv: a fresh virtualenv, installed from nothing but the Bento's own locked
requirements, serves it from a folder outside the checkout (so the service imports the code copied into the
Bento); and the Dockerfile `bentoml containerize` builds from is kept in the Bento.

Installing uses uv and its cache (``uv cache dir``): the first run downloads the locked wheels (~3 GB
unpacked in the cache), a rerun links them from it. Without the package registry the test is skipped,
saying so.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import test_serving
from test_serving import CLASSES, free_port, log_tail, save_model, stop, upload, wait_ready
from uv import find_uv_bin

from affectflow.packaging import build_bento

INSTALL_TIMEOUT_S = 1800  # a cold cache downloads TensorFlow and the rest on a slow line
# A fresh venv has no bytecode yet and a fresh numba cache (librosa's JIT): its first start took 57-123 s here
# (2 cores, loaded), against ~10 s for test_serving's servers.
READY_TIMEOUT_S = 600
# What uv says when the registry cannot be reached (as opposed to a requirement it cannot satisfy).
NETWORK_ERROR = re.compile(r"error sending request|dns error|failed to lookup address|connection refused|"
                           r"network is unreachable|tcp connect error|operation timed out", re.IGNORECASE)
# The Dockerfile `bentoml containerize` generates (public API), without BuildKit's cache mounts.
WRITE_CONTAINERFILE = ("import sys, bentoml; bentoml.container.get_containerfile(sys.argv[1], output_path=sys.argv[2], "
                       "enable_buildkit=False)")


def run(cmd: list, what: str, **kwargs) -> str:
    """A child process that must succeed; its stdout, or a failure showing its last lines."""
    done = subprocess.run([str(part) for part in cmd], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment minus whatever ties a child to this venv or this checkout."""
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "AFFECTFLOW_HOME", "NUMBA_CACHE_DIR")
    return {**{k: v for k, v in os.environ.items() if k not in dropped}, "BENTOML_DO_NOT_TRACK": "true", **extra}


def bento_folder(tag: str) -> Path:
    """The Bento's folder in the current store (``bentoml.get``; ``bentoml get -o path`` wraps long paths)."""
    out = run([sys.executable, "-c", "import sys, bentoml; print(bentoml.get(sys.argv[1]).path)", tag],
              f"finding Bento {tag}", env=clean_env(BENTOML_HOME=os.environ["BENTOML_HOME"]))
    return Path(out.strip().splitlines()[-1])


def group_gone(pgid: int, timeout_s: float) -> bool:
    """Whether every process of group ``pgid`` has exited within ``timeout_s`` (zombies count as exited: a
    container's first process may never reap them)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [proc for proc in psutil.process_iter(["status"]) if proc.info["status"] != psutil.STATUS_ZOMBIE
                and _pgid(proc.pid) == pgid]:
            return True
        time.sleep(0.5)
    return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def index_of(requirements: Path) -> str | None:
    """The package index the locked requirements name (BentoML writes ``--index-url``), else None (uv's own)."""
    for line in requirements.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("--index-url", "-i"):
            return parts[1]
    return None


def fresh_venv(venv: Path, requirements: Path) -> Path:
    """A new virtualenv (no system site packages) with exactly ``requirements`` installed by uv, plus bentoml
    when they lack it; returns its python. Skips when the package registry cannot be reached."""
    uv, env = find_uv_bin(), clean_env()
    index = index_of(requirements)
    if index and index.startswith(("http://", "https://")):
        try:
            httpx.get(f"{index.rstrip('/')}/bentoml/", timeout=30, follow_redirects=True)
        except httpx.TransportError as err:
            pytest.skip(f"the package registry {index} cannot be reached ({err!r}): no fresh venv for the Bento")
    # cwd outside the checkout: uv must not read the project's pyproject.toml.
    run([uv, "venv", "--quiet", "--python", sys.executable, venv], "uv venv", cwd=venv.parent, env=env)
    python = venv / "bin" / "python"
    pinned = any(re.match(r"bentoml\s*[=<>~!]", line.strip()) for line in requirements.read_text().splitlines())
    extra = [] if pinned else [f"bentoml=={metadata.version('bentoml')}"]
    done = subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements), *extra],
                          cwd=venv.parent, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-20:])
        if NETWORK_ERROR.search(tail):
            pytest.skip(f"installing the Bento's requirements needs the package registry {index}:\n{tail}")
        pytest.fail(f"uv could not install the Bento's own requirements {requirements}:\n{tail}")
    return python


@pytest.mark.slow
def test_bento_serves_from_a_fresh_venv_of_its_own_requirements(home, make_clip, monkeypatch, tmp_path):
    model_tag = save_model("v1")
    bento_tag = build_bento(model_tag)
    bento = bento_folder(bento_tag)
    requirements = bento / "env" / "python" / "requirements.txt"
    assert requirements.is_file(), sorted(str(p.relative_to(bento)) for p in (bento / "env").rglob("*"))
    dockerfile = bento / "env" / "docker" / "Dockerfile"  # written by `bentoml build`
    assert "env/python/requirements.txt" in dockerfile.read_text()

    python = fresh_venv(tmp_path / "venv", requirements)
    outside = tmp_path / "outside"  # not the checkout: nothing of affectflow is importable from here
    outside.mkdir()
    env = clean_env(BENTOML_HOME=str(home.bentoml_home), NUMBA_CACHE_DIR=str(tmp_path / "numba"),
                    PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    probe = subprocess.run([python, "-c", "import affectflow"], cwd=outside, env=env, capture_output=True, text=True)
    assert "No module named 'affectflow'" in probe.stderr, probe.stderr

    # The Bento's Dockerfile is the one `bentoml containerize` generates (it adds only BuildKit cache mounts).
    containerfile = tmp_path / "containerize.dockerfile"
    run([python, "-c", WRITE_CONTAINERFILE, bento_tag, containerfile], "bentoml.container.get_containerfile",
        cwd=outside, env=env)
    assert dockerfile.read_text() == containerfile.read_text()

    clip = make_clip("clip.mp4", seconds=1.0).read_bytes()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    monkeypatch.setattr(test_serving, "READY_TIMEOUT_S", READY_TIMEOUT_S)  # wait_ready's limit
    with log_path.open("wb") as log:
        proc = subprocess.Popen([python.parent / "bentoml", "serve", bento_tag, "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=outside, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_ready(proc, url, log_path)
            card = httpx.post(f"{url}/metadata", timeout=30).json()
            assert card["model_tag"] == model_tag and card["classes"] == list(CLASSES)  # the pinned model
            response = upload(url, clip)
            assert response.status_code == 200, f"{response.text}\n{log_tail(log_path)}"
            body = response.json()
            assert body["emotion"] in card["classes"] and set(body["probabilities"]) == set(card["classes"])
            assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert body["model_version"] == "v1"

            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the server did not stop within 60 s of SIGTERM:\n{log_tail(log_path)}")
            assert group_gone(proc.pid, timeout_s=60), f"workers outlived the server:\n{log_tail(log_path)}"
        finally:
            stop(proc)
    with socket.socket() as probe_port:  # nothing of the server is left listening
        assert probe_port.connect_ex(("127.0.0.1", port)) != 0
