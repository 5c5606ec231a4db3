"""Preprocessing on a real Dask cluster: a scheduler and two workers started as processes on loopback, clips
mapped in chunks as Prefect tasks through ``prefect-dask``'s ``DaskTaskRunner``.

The cache it fills must equal, record for record and array for array, the one a single process fills; a worker
killed mid-run loses only its chunk in flight (retried on the other worker), and no clip is lost: each ends
cached or failed with its reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from support import cli_env, shared_data

from affectflow.cache import preprocess_clips
from affectflow.config import Paths, preprocessing
from affectflow.servers import free_port

pytestmark = pytest.mark.slow

CFG = preprocessing()  # decoding and the default face backend, as training uses them
ROOT = Path(__file__).resolve().parents[2]


def _remux(source: Path, out: Path, tag: str) -> None:
    """The same streams in a new container (other bytes, so another record; the same decoded media)."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(source), "-map", "0", "-c", "copy",
                    "-metadata", f"comment={tag}", str(out)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """The six real CREMA-D clips, a real face video and one with no face, each twice (remuxed), and a clip
    that is not media at all."""
    sources = [*sorted(shared_data("crema-d", "VideoFlash").glob("*.flv")),
               shared_data("faces", "single_face.mp4"), shared_data("faces", "no_face.mp4")]
    folder = tmp_path_factory.mktemp("clips")
    out = [folder / f"{copy}-{source.name}" for copy in ("a", "b") for source in sources]
    for target in out:
        _remux(sources[[s.name for s in sources].index(target.name[2:])], target, target.name)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"not a video" * 300)
    return [*out, broken]


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory) -> Path:
    """The cache a single process fills (``affectflow.cache`` in this process, no task runner)."""
    root = tmp_path_factory.mktemp("reference")
    preprocess_clips(clips, root, CFG)
    return root / CFG.hash()


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes (no nanny: a killed worker stays dead)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard")
        self.workers = [self._start("worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                    "--host", "127.0.0.1") for _ in range(2)]
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)

    @staticmethod
    def _start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))

    def busy_worker_pid(self) -> int | None:
        """The process id of a worker computing a chunk now."""
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            busy = [address for address, keys in client.processing().items() if keys]
            pids = client.run(os.getpid, workers=busy) if busy else {}
        return next(iter(pids.values()), None)

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture(scope="module")
def cluster():
    started = Cluster()
    yield started
    started.stop()


def records(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every record of a cache folder: name -> arrays."""
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as data:
            out[path.name] = {name: data[name] for name in data.files}
    return out


def assert_same_cache(folder: Path, reference: Path) -> None:
    got, expected = records(folder), records(reference)
    assert sorted(got) == sorted(expected)  # names are content hashes: the same clips
    for name, arrays in expected.items():
        assert sorted(got[name]) == sorted(arrays)
        for member, array in arrays.items():
            np.testing.assert_array_equal(got[name][member], array, err_msg=f"{name}:{member}")


def test_a_killed_dask_worker_loses_no_clip_and_the_cache_equals_a_single_process(
        prefect_harness, home: Paths, clips, reference, cluster) -> None:
    from prefect import get_client

    from flows.preprocess import preprocess_flow
    from tasks.preprocess import run_on, task_runner

    root = home.home / "shared-cache"
    out: dict = {}
    run = threading.Thread(target=lambda: out.update(lines=run_on(task_runner(cluster.address), preprocess_flow,
                                                                  [str(c) for c in clips], CFG, str(root))))
    run.start()
    victim = None
    while run.is_alive() and victim is None:  # kill a worker while it computes a chunk
        victim = cluster.busy_worker_pid()
        time.sleep(0.05)
    assert victim is not None, "no worker was seen computing"
    os.kill(victim, signal.SIGKILL)
    run.join(timeout=900)

    *lines, summary = out["lines"]
    assert [line["clip"] for line in lines] == [str(c) for c in clips]
    assert all(line["ok"] or line["error"] for line in lines)
    assert [line["clip"] for line in lines if not line["ok"]] == [str(clips[-1])]  # only the broken clip
    assert "not a media file" in lines[-1]["error"] and summary["failed"] == 1
    assert_same_cache(root / CFG.hash(), reference)

    names = {c.name for c in clips}
    with get_client(sync_client=True) as client:  # each chunk is a task run, its clips' failures in its message
        chunks = [r for r in client.read_task_runs() if r.name.startswith("preprocess ")
                  and r.name.split()[1] in names and r.state.is_final()]
    assert len({r.name for r in chunks}) >= 2 and all(r.state.is_completed() for r in chunks)
    assert any("1 of" in r.state.message and "broken.mp4" in r.state.message for r in chunks)


@pytest.mark.parametrize("where", ["dask", "2 local threads"])
def test_cli_fills_the_same_cache_as_a_single_process(home: Paths, clips, reference, cluster, where: str) -> None:
    """``affectflow preprocess --dask tcp://...`` against a running cluster, and ``--workers 2`` (Prefect's
    thread pool)."""
    option = ["--dask", cluster.address] if where == "dask" else ["--workers", "2"]
    done = subprocess.run([sys.executable, "-m", "cli", "preprocess", *map(str, clips), *option],
                          env=cli_env(home), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]  # the broken clip
    *lines, summary = map(json.loads, done.stdout.splitlines())
    assert [line["clip"] for line in lines if not line["ok"]] == [str(clips[-1])]
    assert (summary["ok"], summary["failed"]) == (len(clips) - 1, 1)
    assert_same_cache(home.features / CFG.hash(), reference)
