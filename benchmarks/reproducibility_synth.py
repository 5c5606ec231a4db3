"""Is the built-in synthetic corpus bit-identical on every x86-64 CPU? Writes it under emulated CPUs.

    python benchmarks/reproducibility_synth.py [--clips 360] [--speakers 12] [--seed 0]
                                               [--settings default,no-avx512,avx2-cpu,sse-baseline]
                                               [--out benchmarks/results/reproducibility_synth.json]

Each setting runs ``write_synthetic_batch`` (the ``make demo`` corpus by default) in its own process,
one after the other, with the run-time CPU dispatch of every library involved turned down before
anything is imported:

- ``default``: what this machine picks;
- ``no-avx512``: numpy's AVX-512 loops off (``NPY_DISABLE_CPU_FEATURES``; numpy 2.4 names its
  dispatch targets ``X86_V4``, ``AVX512_ICL``, ``AVX512_SPR``: ``AVX512F``/``AVX512_SKX`` are
  silently ignored there);
- ``avx2-cpu``: an AVX2-only CPU as far as software can tell: numpy as above, OpenBLAS's Haswell
  kernels (``OPENBLAS_CORETYPE``), OpenCV without AVX-512, glibc's libm without AVX-512;
- ``sse-baseline``: an x86-64 CPU without AVX and FMA: numpy's baseline loops (``X86_V3`` off too),
  OpenBLAS Nehalem kernels, OpenCV's dispatch off and ``cv2.setUseOptimized(False)``, glibc's non-FMA
  libm (``GLIBC_TUNABLES=glibc.cpu.hwcaps=...``) and x264 with SSE2 assembly only (``asm=``; ffmpeg's
  own SIMD needs no emulating: the synthesiser turns it off with ``-cpuflags 0``).

Every file's sha256 is compared with the first setting's, and the dataset version that ingest would
give the batch (``affectflow.ingest._version`` of its clip hashes and labels) is reported with the time
each write took. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NO_AVX512_NUMPY = "AVX512_SPR AVX512_ICL X86_V4"
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "no-avx512": {"NPY_DISABLE_CPU_FEATURES": NO_AVX512_NUMPY},
    "avx2-cpu": {"NPY_DISABLE_CPU_FEATURES": NO_AVX512_NUMPY, "OPENBLAS_CORETYPE": "Haswell",
                 "OPENCV_CPU_DISABLE": "AVX512-SKX", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"},
    "sse-baseline": {"NPY_DISABLE_CPU_FEATURES": NO_AVX512_NUMPY + " X86_V3", "OPENBLAS_CORETYPE": "Nehalem",
                     "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX2,FP16,AVX,SSE4.2,SSE4.1,POPCNT",
                     "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-AVX",
                     "AFFECTFLOW_BENCH_OPENCV_UNOPTIMIZED": "1", "AFFECTFLOW_BENCH_X264_SSE2": "1"},
}
# Only the dispatch variables of a setting reach its child; any inherited from the caller are dropped.
DISPATCH_VARIABLES = {name for env in SETTINGS.values() for name in env}
X264_SSE2 = "asm=MMX2,SSE,SSE2,SSE2Fast"


def _x264_sse2_only() -> None:
    """Make the synthesiser's x264 use the assembly an SSE2-only CPU would get."""
    from affectflow import synth

    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if cmd and "ffmpeg" in Path(cmd[0]).name:
            cmd = list(cmd)
            params = cmd.index("-x264-params") + 1
            cmd[params] = f"{cmd[params]}:{X264_SSE2}"
        return real_run(cmd, *args, **kwargs)

    synth.subprocess = type("SubprocessSSE2", (), {"run": staticmethod(run)})


def _dispatch_state() -> dict:
    """What each library actually dispatches to in this process (proof that the emulation took)."""
    import cv2
    import threadpoolctl
    from numpy._core._multiarray_umath import __cpu_features__

    blas = [f"{lib['prefix']}:{lib.get('architecture')}" for lib in threadpoolctl.threadpool_info()
            if lib.get("internal_api") == "openblas"]
    return {"numpy": [name for name in ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR") if __cpu_features__.get(name)],
            "openblas": blas, "opencv": cv2.getCPUFeaturesLine(), "opencv_optimized": cv2.useOptimized(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "x264": X264_SSE2 if os.environ.get("AFFECTFLOW_BENCH_X264_SSE2") else "auto"}


def child(clips: int, speakers: int, seed: int) -> dict:
    import cv2
    import pandas as pd

    if os.environ.get("AFFECTFLOW_BENCH_OPENCV_UNOPTIMIZED"):
        cv2.setUseOptimized(False)
    if os.environ.get("AFFECTFLOW_BENCH_X264_SSE2"):
        _x264_sse2_only()
    from affectflow.ingest import VERSION_COLUMNS, _version
    from affectflow.labels import LABELS_FILENAME
    from affectflow.synth import write_synthetic_batch

    with tempfile.TemporaryDirectory(prefix="affectflow-repro-") as scratch:
        out = Path(scratch) / "batch"
        started = time.perf_counter()
        write_synthetic_batch(out, clips=clips, speakers=speakers, seed=seed)
        seconds = time.perf_counter() - started
        digests = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(out.rglob("*")) if p.is_file()}
        labels = pd.read_csv(out / LABELS_FILENAME)
    manifest = labels.assign(clip_hash=[digests[p] for p in labels["path"]])
    return {"seconds": round(seconds, 1), "dataset_version": _version(manifest[list(VERSION_COLUMNS)]),
            "dispatch": _dispatch_state(), "files": digests}


def run_setting(name: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DISPATCH_VARIABLES} | SETTINGS[name]
    command = [sys.executable, __file__, "--child", "--clips", str(args.clips), "--speakers", str(args.speakers),
               "--seed", str(args.seed)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"setting {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=360)
    parser.add_argument("--speakers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--out", type=Path, default=RESULTS / "reproducibility_synth.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.clips, args.speakers, args.seed)))
        return

    names = args.settings.split(",")
    runs = {}
    for name in names:
        runs[name] = run_setting(name, args)
        print(f"{name:13s} {runs[name]['seconds']:6.1f} s  {runs[name]['dataset_version']}  "
              f"dispatch {runs[name]['dispatch']}", flush=True)
    reference = runs[names[0]]["files"]
    summary = {}
    for name, run in runs.items():
        differing = sorted(path for path in reference.keys() | run["files"].keys()
                           if reference.get(path) != run["files"].get(path))
        summary[name] = {"env": SETTINGS[name], "seconds": run["seconds"], "dataset_version": run["dataset_version"],
                         "files": len(run["files"]), "files_differing_from_" + names[0]: len(differing),
                         "first_differing": differing[:5], "dispatch": run["dispatch"],
                         "sha256_of_all_file_hashes": hashlib.sha256(
                             json.dumps(run["files"], sort_keys=True).encode()).hexdigest()}
        print(f"{name:13s} files {len(run['files'])}, differing from {names[0]}: {len(differing)}")
    identical = all(not s["first_differing"] for s in summary.values())
    print("bit-identical across settings:", identical)
    from importlib.metadata import version

    result = {
        "benchmark": "reproducibility_synth", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": {"clips": args.clips, "speakers": args.speakers, "seed": args.seed},
        "machine": {"cpu": platform.processor() or platform.machine(), "visible_cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(),
                    "versions": {p: version(p) for p in ("numpy", "opencv-python-headless", "imageio-ffmpeg", "pandas")}},
        "bit_identical": identical, "settings": summary,
        "clip_sha256": runs[names[0]]["files"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
