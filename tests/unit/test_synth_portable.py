"""The synthetic corpus is the same bytes on every x86-64 CPU: a small batch written natively, on an emulated
AVX2-only CPU and on an emulated CPU without AVX or FMA is identical, and its hashes are pinned.

Run-time dispatch made ``make demo`` give another dataset version on an AVX2-only machine than on an
AVX-512 one (numpy's SIMD sin/exp/power loops, OpenBLAS's dot kernel). The emulation turns down each
library that dispatches: numpy (``NPY_DISABLE_CPU_FEATURES``; numpy 2.4's targets are ``X86_V3``,
``X86_V4``, ...), OpenBLAS (``OPENBLAS_CORETYPE``), OpenCV (``OPENCV_CPU_DISABLE`` and
``setUseOptimized``), glibc's libm (``GLIBC_TUNABLES``) and x264 (``asm=``); ffmpeg's own SIMD is off in the
synthesiser (``-cpuflags 0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = {"clips": 6, "speakers": 1, "seed": 3, "seconds": 0.6, "size": 48}
EMULATED_CPUS = {
    "avx2": {"NPY_DISABLE_CPU_FEATURES": "AVX512_SPR AVX512_ICL X86_V4", "OPENBLAS_CORETYPE": "Haswell",
             "OPENCV_CPU_DISABLE": "AVX512-SKX", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"},
    "baseline": {"NPY_DISABLE_CPU_FEATURES": "AVX512_SPR AVX512_ICL X86_V4 X86_V3", "OPENBLAS_CORETYPE": "Nehalem",
                 "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX2,FP16,AVX,SSE4.2,SSE4.1,POPCNT",
                 "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-AVX"},
}
SETTABLE = {name for env in EMULATED_CPUS.values() for name in env}
# sha256 of the SMALL batch. They change when the synthesiser's output changes on purpose, and with a new
# numpy (its random streams), pandas (CSV formatting) or imageio-ffmpeg (encoder build): re-pin them only
# when test_same_bytes_natively_and_on_emulated_cpus passes.
PINNED = {
    "labels.csv": "edd184bca2947d1ee631ee1496011f10f9c00b0b868e416ed085198996a5ee1a",
    "clips/s3-spk00_0000_anger.mp4": "a83a119f1b6a19fa61c9c918f2292157909b448e5469fb189011bcc76176d6e9",
    "clips/s3-spk00_0002_fear.mp4": "3428e9f9ea73115a16d8a1715fbd0cd83b4b0383a88bad75eb3238e7fd7daa77",
}

CHILD = r"""
import hashlib, json, subprocess, sys
from pathlib import Path

import cv2

out, baseline, small = Path(sys.argv[1]), sys.argv[2] == "baseline", json.loads(sys.argv[3])
cv2.setUseOptimized(not baseline)
from affectflow import synth

if baseline:  # x264's assembly as on an SSE2-only CPU (ffmpeg's own SIMD is off anyway: -cpuflags 0)
    run = subprocess.run

    def sse2_only(cmd, *args, **kwargs):
        cmd = list(cmd)
        cmd[cmd.index("-x264-params") + 1] += ":asm=MMX2,SSE,SSE2,SSE2Fast"
        return run(cmd, *args, **kwargs)

    synth.subprocess = type("SSE2", (), {"run": staticmethod(sse2_only)})
from numpy._core._multiarray_umath import __cpu_features__

synth.write_synthetic_batch(out, **small)
print(json.dumps({
    "numpy": sorted(k for k in ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR") if __cpu_features__.get(k)),
    "opencv_optimized": cv2.useOptimized(),
    "files": {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(out.rglob("*")) if p.is_file()},
}))
"""


def _write(out: Path, cpu: str) -> dict:
    """The SMALL batch written by a fresh process on ``cpu`` ("native" or one of ``EMULATED_CPUS``)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTABLE} | EMULATED_CPUS.get(cpu, {})
    done = subprocess.run([sys.executable, "-c", CHILD, str(out), cpu, json.dumps(SMALL)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("portable")
    return {cpu: _write(root / cpu, cpu) for cpu in ("native", *EMULATED_CPUS)}


def test_same_bytes_natively_and_on_emulated_cpus(batches):
    assert "X86_V4" not in batches["avx2"]["numpy"], "the AVX2 emulation did not take"
    assert batches["baseline"]["numpy"] == [] and not batches["baseline"]["opencv_optimized"], \
        "the baseline emulation did not take"
    native = batches["native"]["files"]
    assert len(native) == SMALL["clips"] + 1
    for cpu in EMULATED_CPUS:
        differing = sorted(p for p in native if native[p] != batches[cpu]["files"].get(p))
        assert not differing, f"bytes that depend on the CPU ({cpu}): {differing}"


def test_a_small_batch_has_pinned_bytes(batches):
    native = batches["native"]["files"]
    assert {path: native[path] for path in PINNED} == PINNED
