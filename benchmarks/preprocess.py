"""Preprocessing speed on one core: our full per-clip preprocessing against the original notebooks' approach.

    python benchmarks/preprocess.py [--clips 20] [--out benchmarks/results/preprocess.json]

Clips are CREMA-D-like (2.5 s, 480x360, 30 fps, FLV with Sorenson video and MP3 audio), cut from the real
face video ``../shared/data/faces/single_face.mp4`` with varying offsets, crops, mirroring and brightness;
without that file, from ffmpeg's test pattern (then the face stage measures frames with no face).

- ours: content hash, then ``extract_features`` (16 sampled frames decoded once, audio decoded
  in-process, built-in face backend: detection, 68 landmarks, pose, AU estimates, aligned crops; MFCC,
  deltas, log-mel) and the compressed record written, all in this process;
- baseline, re-doing the original notebooks (without OpenFace, which they also ran): every frame
  decoded with OpenCV and resized to 224x224, the audio written to a temporary WAV by moviepy and read
  back, a hand-written numpy MFCC, and a 300-dpi matplotlib PNG of it.

The process and its ffmpeg children are pinned to one CPU and math libraries to one thread. Ours and the
baseline alternate clip by clip, so load from other work on the machine falls on both alike; medians
are reported. Results are printed and written as JSON.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from affectflow.cache import file_sha256  # noqa: E402
from affectflow.config import PreprocessConfig  # noqa: E402
from affectflow.features import extract_features, save_features, warm_up  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "single_face.mp4"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 0.5
CLIP_SECONDS = 2.5


def pin_to_one_core() -> int:
    """Run this process (and the ffmpeg processes it starts) on one CPU; which one."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    return cpu


def make_clip(index: int, out: Path) -> None:
    """One CREMA-D-like FLV: a 480x360 window of the face video (or test pattern), 30 fps, MP3 audio."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    if SOURCE.exists():
        x, mirror, brightness = 80 + (index * 13) % 81, "hflip," if index % 2 else "", 0.02 * (index % 5 - 2)
        inputs = ["-stream_loop", "-1", "-i", str(SOURCE), "-ss", f"{(index * 0.37) % 2.4:.2f}"]
        video = f"crop=480:360:{x}:0,{mirror}eq=brightness={brightness:.2f},fps=30"
    else:
        inputs = ["-f", "lavfi", "-i", "testsrc=size=480x360:rate=30", "-f", "lavfi",
                  "-i", f"sine=frequency={200 + 20 * index}:sample_rate=44100"]
        video = "fps=30"
    subprocess.run([ffmpeg, "-y", "-v", "error", *inputs, "-t", str(CLIP_SECONDS), "-vf", video, "-c:v", "flv",
                    "-q:v", "4", "-c:a", "libmp3lame", "-ar", "44100", "-ac", "1", "-b:a", "64k", str(out)],
                   check=True, capture_output=True)


class Stopwatch:
    """Seconds per named stage of one clip."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def time(self, name: str, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - start
        return result


def ours(clip: Path, cfg: PreprocessConfig, records: Path) -> tuple[dict[str, float], int]:
    """The full preprocessing of one clip, as the cache does it on a miss; stage times and face frames."""
    watch = Stopwatch()
    digest = watch.time("hash", file_sha256, clip)
    timings: dict[str, float] = {}
    features = extract_features(clip, cfg, timings)
    watch.stages.update(timings)
    watch.time("write", save_features, records / f"{digest}.npz", features)
    return watch.stages, features.face_frames


def numpy_mfcc(signal: np.ndarray, rate: int, n_mfcc: int = 40, n_filters: int = 40) -> np.ndarray:
    """MFCC written out in numpy, as the notebooks did: pre-emphasis, Hamming frames, power spectrum,
    triangular mel filters, log, DCT-II."""
    from scipy.fft import dct

    emphasised = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    length, step, n_fft = int(round(0.025 * rate)), int(round(0.01 * rate)), 512
    count = 1 + max(0, int(np.ceil((len(emphasised) - length) / step)))
    padded = np.append(emphasised, np.zeros(max(0, (count - 1) * step + length - len(emphasised))))
    index = np.arange(length)[None, :] + step * np.arange(count)[:, None]
    frames = padded[index] * np.hamming(length)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    mel_points = np.linspace(0, 2595 * np.log10(1 + rate / 2 / 700), n_filters + 2)
    bins = np.floor((n_fft + 1) * 700 * (10 ** (mel_points / 2595) - 1) / rate).astype(int)
    bank = np.zeros((n_filters, n_fft // 2 + 1))
    for m in range(1, n_filters + 1):
        left, centre, right = bins[m - 1], bins[m], bins[m + 1]
        bank[m - 1, left:centre] = (np.arange(left, centre) - left) / max(centre - left, 1)
        bank[m - 1, centre:right] = (right - np.arange(centre, right)) / max(right - centre, 1)
    energies = np.log(np.maximum(power @ bank.T, np.finfo(float).eps))
    return dct(energies, type=2, axis=1, norm="ortho")[:, :n_mfcc]


def baseline(clip: Path, scratch: Path) -> dict[str, float]:
    """The original notebooks' per-clip preprocessing, without OpenFace."""
    import soundfile
    from matplotlib import pyplot as plt
    from moviepy import VideoFileClip

    watch = Stopwatch()

    def decode_all() -> list[np.ndarray]:
        capture, frames = cv2.VideoCapture(str(clip)), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
        return frames

    frames = watch.time("decode", decode_all)
    watch.time("resize", lambda: [cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in frames])

    def write_wav() -> Path:
        wav = scratch / f"{clip.stem}.wav"
        with VideoFileClip(str(clip)) as video:
            video.audio.write_audiofile(str(wav), fps=16000, logger=None)
        return wav

    wav = watch.time("wav", write_wav)
    signal, rate = watch.time("audio_read", soundfile.read, wav)
    signal = signal.mean(axis=1) if signal.ndim > 1 else signal
    mfcc = watch.time("mfcc", numpy_mfcc, signal, rate)

    def plot() -> None:
        figure, axes = plt.subplots(figsize=(10, 4))
        axes.imshow(mfcc.T, origin="lower", aspect="auto", cmap="viridis")
        axes.set(xlabel="frame", ylabel="MFCC")
        figure.savefig(scratch / f"{clip.stem}.png", dpi=300)
        plt.close(figure)

    watch.time("plot", plot)
    return watch.stages


def summarise(runs: list[dict[str, float]]) -> dict:
    totals = [sum(run.values()) for run in runs]
    return {"per_clip_s": {"median": statistics.median(totals), "mean": statistics.fmean(totals),
                           "min": min(totals), "max": max(totals)},
            "clips_per_s": 1.0 / statistics.median(totals),
            "stages_median_s": {name: statistics.median(run[name] for run in runs) for name in runs[0]}}


def machine(cpu: int) -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "pinned_cpu": cpu, "visible_cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
            "versions": {name: version(name) for name in ("decord", "opencv-python-headless", "dlib-bin", "librosa",
                                                          "moviepy", "numpy")}}


def run(count: int, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    cpu = pin_to_one_core()
    cfg = PreprocessConfig()
    with tempfile.TemporaryDirectory(prefix="affectflow-bench-") as tmp:
        folder = Path(tmp)
        clips = [folder / f"clip{i:03d}.flv" for i in range(count + 1)]
        for i, clip in enumerate(clips):
            make_clip(i, clip)
        warm_up(cfg)  # numba JIT and dlib models: paid once per process, not per clip
        ours(clips[0], cfg, folder)
        baseline(clips[0], folder)
        ours_runs, base_runs, face_frames = [], [], []
        for clip in clips[1:]:
            stages, faces = ours(clip, cfg, folder / "records")
            ours_runs.append(stages)
            face_frames.append(faces)
            base_runs.append(baseline(clip, folder))
    result = {
        "benchmark": "preprocess", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "clips": count, "clip": f"{CLIP_SECONDS} s 480x360 30 fps FLV (flv1 + mp3)",
        "source": str(SOURCE.name) if SOURCE.exists() else "ffmpeg testsrc (no face)",
        "face_backend": cfg.face_backend, "face_frames_per_clip": statistics.fmean(face_frames),
        "machine": machine(cpu), "ours": summarise(ours_runs), "baseline": summarise(base_runs),
    }
    result["ratio"] = result["ours"]["per_clip_s"]["median"] / result["baseline"]["per_clip_s"]["median"]
    result["decode_floor_s"] = statistics.median(r["decode"] + r["audio"] + r["mfcc"] for r in ours_runs)
    result["target_ratio"] = TARGET_RATIO
    result["meets_target"] = result["ratio"] <= TARGET_RATIO
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _stage_text(summary: dict) -> str:
    return ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in summary["stages_median_s"].items())


def report(result: dict) -> str:
    ours_s, base_s = (result[k]["per_clip_s"]["median"] for k in ("ours", "baseline"))
    return "\n".join([
        f"{result['clips']} CREMA-D-like clips ({result['source']}), one core ({result['machine']['cpu']})",
        f"ours:     {ours_s:.3f} s/clip ({1 / ours_s:.1f} clips/s); median ms: {_stage_text(result['ours'])}",
        f"          faces found in {result['face_frames_per_clip']:.1f} of 16 sampled frames per clip; "
        f"frames+audio+MFCC: {result['decode_floor_s']:.3f} s",
        f"baseline: {base_s:.3f} s/clip ({1 / base_s:.1f} clips/s); median ms: {_stage_text(result['baseline'])}",
        f"ratio ours/baseline: {result['ratio']:.2f} (target <= {TARGET_RATIO}: "
        f"{'met' if result['meets_target'] else 'NOT met'})",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="clips to time (default 20)")
    parser.add_argument("--out", type=Path, default=RESULTS / "preprocess.json", help="JSON results file")
    args = parser.parse_args()
    print(report(run(args.clips, args.out)))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
