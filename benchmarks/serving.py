"""Serving throughput: the real `bentoml serve` over HTTP, with adaptive batching against without, in one run.

    python benchmarks/serving.py [--requests 48] [--out benchmarks/results/serving.json]

For each model (audio-only, and audio-visual with faces) and each mode (``AFFECTFLOW_BATCHING=on|off``) a
server is started on this machine with the service's defaults (one request worker per CPU, one model
process), warmed up, then sent the same 3 s clips by 1, 4 and 8 concurrent clients. Reported per setting:
p50 and p95 latency and requests/s; then, per model, the batched requests/s at concurrency 8 over the
unbatched one and the batched p95 at 8 over the p50 at 1.

Clips: 3 s cuts (640x360, 24 fps, H.264 + AAC) of the real face video ``../shared/data/faces/
WolfgangLanger_Pexels.mp4`` at different offsets, its silent audio replaced by real EmoDB speech; without
``../shared``, ffmpeg's test pattern (no face) with a tone.
Models are untrained (speed does not depend on the weights) with the default architecture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx
import imageio_ffmpeg

from affectflow.arrays import MODALITIES, TRAINING_INPUTS
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import blank_features, stack_inputs
from affectflow.model import build_model
from affectflow.packaging import MODEL_TAG_ENV, PROJECT_ROOT, SERVICE_IMPORT, save_to_bentoml
from affectflow.predict import ModelCard
from affectflow.servers import free_port

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCE = SHARED / "faces" / "WolfgangLanger_Pexels.mp4"      # a face, but a silent audio track
SPEECH = sorted((SHARED / "emodb").glob("*.wav"))[:6]      # real speech for the clips' audio
RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness")
MODELS = {"audio-only": ("audio",), "audio-visual": ("video", "audio", "face")}
CONCURRENCY = (1, 4, 8)
CLIP_SECONDS = 3.0


def make_clips(folder: Path, count: int = 6) -> list[Path]:
    """``count`` 3 s clips: cuts of the real face video at spread offsets, or the test pattern."""
    ffmpeg, clips = imageio_ffmpeg.get_ffmpeg_exe(), []
    for i in range(count):
        out = folder / f"clip{i}.mp4"
        video = (["-ss", f"{i * 2.5:.1f}", "-i", str(SOURCE)] if SOURCE.exists()
                 else ["-f", "lavfi", "-i", "testsrc=size=640x360:rate=24"])
        audio = (["-i", str(SPEECH[i % len(SPEECH)])] if SPEECH
                 else ["-f", "lavfi", "-i", f"sine=f={220 + 40 * i}"])
        subprocess.run([ffmpeg, "-y", "-v", "error", *video, *audio, "-map", "0:v", "-map", "1:a", "-af", "apad",
                        "-t", str(CLIP_SECONDS), "-vf", "scale=640:360", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-ar", "44100", str(out)], check=True)
        clips.append(out)
    return clips


def save_model(name: str, modalities: tuple[str, ...]) -> str:
    """An untrained multitask model of the default architecture over ``modalities``, in BentoML's store."""
    cfg = PreprocessConfig()
    inputs = [n for n in TRAINING_INPUTS if any(n in MODALITIES[m] for m in modalities)]
    shapes = {n: a.shape[1:] for n, a in stack_inputs([blank_features(cfg)], inputs).items()}
    model = build_model(CLASSES, shapes, TrainConfig())
    return save_to_bentoml(model, ModelCard(CLASSES, cfg, "multitask", model_version=f"{name}/1", dataset=name))


def start_server(tag: str, batching: bool, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, MODEL_TAG_ENV: tag, "AFFECTFLOW_BATCHING": "on" if batching else "off",
           "BENTOML_DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE_IMPORT, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after 180 s; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def one_request(url: str, clip: bytes) -> float:
    started = time.perf_counter()
    response = httpx.post(f"{url}/predict", files={"video": ("clip.mp4", clip, "video/mp4")}, timeout=300)
    response.raise_for_status()
    return time.perf_counter() - started


def load(url: str, clips: list[bytes], concurrency: int, requests: int) -> dict:
    """``requests`` uploads by ``concurrency`` clients at once: latency percentiles and throughput."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(lambda i: one_request(url, clips[i % len(clips)]), range(requests)))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": requests, "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
            "requests_per_s": round(requests / wall, 3)}


def run(requests: int) -> dict:
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["BENTOML_HOME"] = str(folder / "bentoml")
        clips = [p.read_bytes() for p in make_clips(folder)]
        for model, modalities in MODELS.items():
            tag = save_model(model, modalities)
            for batching in (False, True):  # the same clips, the same machine, one after the other
                proc, url = start_server(tag, batching, folder / f"{model}-{batching}.log")
                try:
                    for clip in clips:  # warm every worker's first-request costs
                        one_request(url, clip)
                    for concurrency in CONCURRENCY:
                        row = {"model": model, "batching": batching,
                               **load(url, clips, concurrency, requests if concurrency > 1 else requests // 2)}
                        print(json.dumps(row), flush=True)
                        runs.append(row)
                finally:
                    stop_server(proc)
    return {"runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict]) -> dict:
    def find(model: str, batching: bool, concurrency: int) -> dict:
        return next(r for r in runs if (r["model"], r["batching"], r["concurrency"]) == (model, batching, concurrency))

    summary = {}
    for model in MODELS:
        batched8, unbatched8, batched1 = find(model, True, 8), find(model, False, 8), find(model, True, 1)
        summary[model] = {
            "throughput_ratio_c8": round(batched8["requests_per_s"] / unbatched8["requests_per_s"], 2),
            "p95_c8_over_p50_c1": round(batched8["p95_s"] / batched1["p50_s"], 2)}
    return summary


def markdown(result: dict) -> str:
    lines = ["| model | batching | concurrency | p50 s | p95 s | requests/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {'on' if r['batching'] else 'off'} | {r['concurrency']} | {r['p50_s']:.3f} | "
              f"{r['p95_s']:.3f} | {r['requests_per_s']:.2f} |" for r in result["runs"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per setting at concurrency 4 and 8 "
                                                                 "(half at concurrency 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args()
    result = run(args.requests)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "bentoml": version("bentoml"),
                         "tensorflow": version("tensorflow"), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                         "clips": f"{SOURCE.name} + EmoDB speech" if SOURCE.exists() and SPEECH else "test pattern + tone"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
