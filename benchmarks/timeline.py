"""Timelines of long videos: seconds per window and peak memory, on the real 20 s face video and 10-minute clips.

    python benchmarks/timeline.py [--minutes 10] [--window 3] [--hop 1] [--model URI] [--out FILE]

Clips: ``../shared/data/faces/WolfgangLanger_Pexels.mp4`` (19.7 s, 640x360, one face, silent audio track);
the same video looped to ``--minutes`` (real faces all along, stream-copied); and a synthetic clip of that
length (ffmpeg's 640x360 25 fps test pattern with a tone: no face, so face detection searches every frame,
the slow case). Without ``../shared`` only the synthetic clip is measured.

Each clip is measured in a fresh child process: load the model (``--model``, an MLflow URI, or a small
untrained model in the default preprocessing: an untrained model costs what a trained one of its size
does), warm up, then ``affectflow.timeline.timeline``. Reported: windows, seconds, seconds per window, the
resident memory after warm-up, its peak during the timeline (VmHWM, reset first), the growth, and the resident
memory after each quarter of the windows (flat when memory does not grow with the video's length); beside
it, what decoding all the video's frames at once would take. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACE_VIDEO = ROOT.parent / "shared" / "data" / "faces" / "WolfgangLanger_Pexels.mp4"
RESULTS = ROOT / "benchmarks" / "results" / "timeline.json"


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory line in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def child(clip: str, window: float, hop: float, model_uri: str | None) -> dict:
    """One measurement, in this (fresh) process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from affectflow.config import PreprocessConfig, TrainConfig
    from affectflow.media import stream_layout
    from affectflow.predict import ModelCard, Predictor
    from affectflow.timeline import timeline

    if model_uri:
        from affectflow.registry import load_predictor

        predictor = load_predictor(model_uri)
    else:
        from affectflow.arrays import TRAINING_INPUTS
        from affectflow.features import blank_features, stack_inputs
        from affectflow.model import build_model

        cfg, classes = PreprocessConfig(), ("anger", "happiness", "sadness")
        shapes = {k: v.shape[1:] for k, v in stack_inputs([blank_features(cfg)], TRAINING_INPUTS).items()}
        predictor = Predictor(build_model(classes, shapes, TrainConfig(hidden_units=16)),
                              ModelCard(classes, cfg, "multitask", model_version="untrained"))
    predictor.warm_up()
    layout = stream_layout(clip)
    baseline = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so the peak below is this run's
    rss: dict[int, int] = {}

    def progress(done: int, total: int) -> None:
        rss[done] = _status("VmRSS")

    started = time.perf_counter()
    result = timeline(predictor, clip, window, hop, progress=progress)
    seconds = time.perf_counter() - started
    peak, total = _status("VmHWM"), len(result.windows)
    quarters = [rss[min(d for d in rss if d >= total * q / 4)] for q in (1, 2, 3, 4)]
    import cv2

    capture = cv2.VideoCapture(clip)
    size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) * int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) * 3
    capture.release()
    return {"clip": Path(clip).name, "duration_s": round(layout.duration_s, 3), "windows": total,
            "usable_windows": result.summary.usable_windows,
            "windows_with_face": sum(w.found["face"] for w in result.windows),
            "seconds": round(seconds, 2), "seconds_per_window": round(seconds / total, 4),
            "rss_after_warm_up_mb": baseline, "peak_rss_mb": peak, "growth_mb": peak - baseline,
            "rss_by_quarter_mb": quarters, "all_frames_decoded_mb": round(layout.num_frames * size / 1e6)}


def make_clips(folder: Path, minutes: float) -> list[Path]:
    import imageio_ffmpeg

    ffmpeg, seconds, clips = imageio_ffmpeg.get_ffmpeg_exe(), str(int(minutes * 60)), []
    if FACE_VIDEO.exists():
        looped = folder / f"face-video-looped-{minutes:g}min.mp4"
        # Stream copy cuts at a keyframe past -t: ask for half a second less to stay within the limit.
        subprocess.run([ffmpeg, "-y", "-v", "error", "-stream_loop", "-1", "-i", str(FACE_VIDEO), "-t",
                        f"{minutes * 60 - 0.5:g}", "-c", "copy", str(looped)], check=True)
        clips += [FACE_VIDEO, looped]
    synthetic = folder / f"test-pattern-{minutes:g}min.mp4"
    subprocess.run([ffmpeg, "-y", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size=640x360:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(synthetic)],
                   check=True)
    return [*clips, synthetic]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long clips (default 10)")
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--model", help="an MLflow model URI (default: a small untrained model)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.window, args.hop, args.model)))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="affectflow-timeline-") as tmp:
        for clip in make_clips(Path(tmp), args.minutes):
            cmd = [sys.executable, __file__, "--child", str(clip), "--window", str(args.window), "--hop", str(args.hop)]
            if args.model:
                cmd += ["--model", args.model]
            load = os.getloadavg()[0]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"{clip.name}: the measurement failed:\n{done.stderr[-3000:]}")
            out = done.stdout
            runs.append({**json.loads(out.strip().splitlines()[-1]), "load_average_before": round(load, 2)})
            print(json.dumps(runs[-1]), flush=True)
    report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
              "cpus": os.cpu_count(), "window_s": args.window, "hop_s": args.hop, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
