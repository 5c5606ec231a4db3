"""Preprocessing throughput by worker count and engine: the same clips, decoded with the default face backend.

    python benchmarks/scaling.py [--clips 200] [--rounds 1] [--out benchmarks/results/scaling.json]

Clips: the six real CREMA-D clips (``../shared/data/crema-d/VideoFlash``) and the real face video
``../shared/data/faces/single_face.mp4``, repeated as remuxed copies (the same streams in a new container with
its own metadata tag): every copy has other bytes, so another cache record, and decodes to the same media.
Each configuration fills its own empty cache, through ``flows.preprocess.preprocess_flow`` as ``affectflow
preprocess`` runs it, all in one run so that load from other work on the machine falls on each alike:

- ``direct``: ``affectflow.cache.preprocess_clips`` in this process, no Prefect (the baseline of the ratios);
- ``local-1``: the default for one worker (chunks as Prefect tasks in this process);
- ``local-2-thread`` and ``local-2-process``: Prefect's thread-pool task runner (the default for ``--workers 2``,
  chosen by this measurement) and its process-pool one, two workers;
- ``dask-2``: a Dask cluster the benchmark starts (``dask scheduler`` and two ``dask worker --nthreads 1``
  processes on loopback) through ``prefect-dask``'s ``DaskTaskRunner``;
- ``bare-2``: the machine's ceiling for two workers, a reference and not a way to run affectflow: two warm
  processes (``multiprocessing``, started and warmed before timing), each given half of the clips in one call to
  ``cache.preprocess_chunk``: no engine, no task states, no chunks, no tail.

Per configuration: wall seconds (median over rounds), clips/s, speed-up against ``local-1`` and ``direct``, and
overhead per clip: the worker-seconds spent per clip beyond ``direct``'s ((wall x workers - direct wall) /
clips: process start-up, imports, Prefect's task states, Dask's scheduling). Math libraries run one thread each.
The JSON also holds a projection of CREMA-D (7,442 clips) on 1, 8 and 64 workers from these numbers.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CREMA_D_CLIPS = 7442
CONFIGS = ("direct", "local-1", "local-2-process", "local-2-thread", "dask-2", "bare-2")
WORKERS = {"direct": 1, "local-1": 1, "local-2-process": 2, "local-2-thread": 2, "dask-2": 2, "bare-2": 2}


def sources() -> list[Path]:
    return [*sorted((DATA / "crema-d" / "VideoFlash").glob("*.flv")), DATA / "faces" / "single_face.mp4"]


def make_clips(count: int, folder: Path) -> list[Path]:
    import imageio_ffmpeg

    clips = []
    for index, source in zip(range(count), itertools.cycle(sources())):
        clip = folder / f"clip{index:04d}{source.suffix}"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(source), "-map", "0",
                        "-c", "copy", "-metadata", f"comment=copy {index}", str(clip)], check=True,
                       capture_output=True)
        clips.append(clip)
    return clips


class DaskCluster:
    """``dask scheduler`` + two single-threaded ``dask worker`` processes on loopback."""

    def __init__(self, workers: int = 2) -> None:
        from distributed import Client

        from affectflow.servers import free_port

        self.address = f"tcp://127.0.0.1:{free_port()}"
        cli = [sys.executable, "-m"]
        self.processes = [subprocess.Popen([*cli, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                            self.address.rsplit(":", 1)[1], "--no-dashboard"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)]
        self.processes += [subprocess.Popen([*cli, "distributed.cli.dask_worker", self.address, "--nthreads", "1",
                                             "--no-dashboard", "--host", "127.0.0.1"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
                           for _ in range(workers)]
        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=30)


def _warm_bare_worker(clip: Path, scratch: Path) -> None:
    """A ``bare-2`` worker's start: imports, numba code and face models loaded on one clip; then it says so."""
    from affectflow.cache import preprocess_chunk
    from affectflow.config import preprocessing

    preprocess_chunk([clip], scratch / f"worker-{os.getpid()}", preprocessing())
    (scratch / f"ready-{os.getpid()}").touch()


class BarePool:
    """Two warm processes with no engine between them and this one (``bare-2``)."""

    def __init__(self, clip: Path, scratch: Path, workers: int = 2) -> None:
        import multiprocessing

        scratch.mkdir(parents=True, exist_ok=True)
        self.pool = multiprocessing.get_context("spawn").Pool(workers, _warm_bare_worker, (clip, scratch))
        while len(list(scratch.glob("ready-*"))) < workers:
            time.sleep(0.2)

    def run(self, clips: list[Path], cache: Path) -> list[bool]:
        from affectflow.cache import preprocess_chunk
        from affectflow.config import preprocessing

        half = (len(clips) + 1) // 2
        parts = self.pool.starmap(preprocess_chunk, [(clips[:half], cache, preprocessing()),
                                                     (clips[half:], cache, preprocessing())], chunksize=1)
        return [r.ok for part in parts for r in part]

    def stop(self) -> None:
        self.pool.terminate()
        self.pool.join()


def run_config(name: str, clips: list[Path], cache: Path, dask_address: str, bare: BarePool | None = None) -> float:
    """Wall seconds to fill an empty cache for ``clips``; every clip must succeed."""
    from prefect.task_runners import ProcessPoolTaskRunner

    from affectflow.cache import preprocess_clips
    from affectflow.config import preprocessing
    from flows.preprocess import preprocess_flow
    from tasks.preprocess import run_on, task_runner

    cfg = preprocessing()
    runner = {"local-1": lambda: task_runner(None, 1), "local-2-thread": lambda: task_runner(None, 2),
              "local-2-process": lambda: ProcessPoolTaskRunner(max_workers=2),
              "dask-2": lambda: task_runner(dask_address)}.get(name)
    started = time.perf_counter()
    if name == "bare-2":
        ok = bare.run(clips, cache)
    elif runner is None:
        ok = [r.ok for r in preprocess_clips(clips, cache, cfg)]
    else:
        ok = [line["ok"] for line in run_on(runner(), preprocess_flow, [str(c) for c in clips], cfg, str(cache))[:-1]]
    seconds = time.perf_counter() - started
    if not all(ok) or len(ok) != len(clips):
        raise RuntimeError(f"{name}: {ok.count(False)} of {len(clips)} clips failed")
    return seconds


def warm_up(clips: list[Path], scratch: Path, dask_address: str) -> None:
    """Paid once, not per configuration: Prefect's temporary API started, this process's imports and numba's
    cached functions loaded, and both Dask workers' (a cluster is long-lived; four one-clip chunks reach both).
    A process pool's start-up is paid by every run that uses one, as by every ``affectflow preprocess
    --workers N``."""
    for name in ("direct", "local-1"):
        run_config(name, clips[:1], scratch / name, dask_address)
    run_config("dask-2", clips[:4], scratch / "dask-2", dask_address)


def machine() -> dict:
    from importlib.metadata import version

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m_at_start": os.getloadavg()[0],
            "versions": {name: version(name) for name in ("prefect", "prefect-dask", "distributed", "decord")}}


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "affectflow", "tasks",
                            "flows", "benchmarks/scaling.py"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+uncommitted" if dirty else "")


def summarise(walls: dict[str, list[float]], clips: int) -> dict:
    median = {name: statistics.median(values) for name, values in walls.items()}
    out = {}
    for name, wall in median.items():
        out[name] = {"workers": WORKERS[name], "wall_s": round(wall, 2), "walls_s": [round(w, 2) for w in walls[name]],
                     "clips_per_s": round(clips / wall, 3),
                     "speedup_vs_local_1": round(median["local-1"] / wall, 3),
                     "speedup_vs_direct": round(median["direct"] / wall, 3),
                     "overhead_per_clip_s": round((wall * WORKERS[name] - median["direct"]) / clips, 4)}
    return out


def projection(configs: dict) -> dict:
    """CREMA-D wall time on paper: one worker at local-1's rate; N Dask workers each at dask-2's cost per clip
    (worker-seconds per clip, overhead included), assuming the scheduler and the shared storage keep up."""
    per_clip_1 = 1 / configs["local-1"]["clips_per_s"]
    dask_cost = configs["dask-2"]["workers"] / configs["dask-2"]["clips_per_s"]
    return {"clips": CREMA_D_CLIPS, "minutes": {
        "1 worker (local-1)": round(CREMA_D_CLIPS * per_clip_1 / 60, 1),
        **{f"{n} Dask workers": round(CREMA_D_CLIPS * dask_cost / n / 60, 1) for n in (8, 64)}},
        "worker_seconds_per_clip": {"local-1": round(per_clip_1, 4), "dask": round(dask_cost, 4)}}


def run(count: int, rounds: int, out: Path) -> dict:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with tempfile.TemporaryDirectory(prefix="affectflow-scaling-") as tmp:
        folder = Path(tmp)
        os.environ["PREFECT_HOME"] = str(folder / "prefect")  # the benchmark's own Prefect database
        os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
        (folder / "clips").mkdir()
        clips = make_clips(count, folder / "clips")
        started = machine()
        cluster = DaskCluster()
        bare = BarePool(clips[0], folder / "bare-warm-up")
        walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
        try:
            server = SubprocessASGIServer()  # one Prefect API for every configuration
            server.start()
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                warm_up(clips, folder / "warm-up", cluster.address)
                for round_index in range(rounds):
                    for name in CONFIGS:
                        seconds = run_config(name, clips, folder / f"cache-{name}-{round_index}", cluster.address,
                                             bare)
                        walls[name].append(seconds)
                        print(f"round {round_index + 1}: {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
        finally:
            cluster.stop()
            bare.stop()
    configs = summarise(walls, count)
    result = {"benchmark": "scaling", "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit(),
              "clips": count, "rounds": rounds, "sources": [s.name for s in sources()],
              "face_backend": "landmarks (default)", "machine": {**started, "load_avg_1m_at_end": os.getloadavg()[0]},
              "configs": configs, "projection_crema_d": projection(configs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict) -> str:
    lines = [f"{result['clips']} clips, {result['rounds']} round(s), {result['machine']['cores']} cores "
             f"(load {result['machine']['load_avg_1m_at_start']:.1f} at start)",
             f"{'config':16s} {'wall s':>7s} {'clips/s':>8s} {'x local-1':>9s} {'overhead s/clip':>15s}"]
    for name, config in result["configs"].items():
        lines.append(f"{name:16s} {config['wall_s']:7.1f} {config['clips_per_s']:8.2f} "
                     f"{config['speedup_vs_local_1']:9.2f} {config['overhead_per_clip_s']:15.3f}")
    lines.append("CREMA-D on paper (minutes): " + ", ".join(
        f"{k} {v}" for k, v in result["projection_crema_d"]["minutes"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="clips per configuration (default 200)")
    parser.add_argument("--rounds", type=int, default=1, help="times each configuration runs (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json", help="JSON results file")
    args = parser.parse_args()
    print(report(run(args.clips, args.rounds, args.out)))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
