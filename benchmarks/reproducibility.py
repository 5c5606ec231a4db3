"""Is training reproducible on CPU? The project's model trained twice per setting on one fixed feature set.

    python benchmarks/reproducibility.py [--clips 180] [--speakers 10] [--epochs 40] [--repeats 2]
                                         [--settings a-default,b-determinism,...]
                                         [--out benchmarks/results/reproducibility.json]

The feature set is fixed first: a synthetic corpus (``write_synthetic_batch``, seed 0, 2 s clips) is
preprocessed once into a feature cache (default ``PreprocessConfig``: video, faces, audio) and every
run trains on those very records (their sha256 is reported), so only training can differ. Each run is
``affectflow.experiment.run_experiment`` (speaker split, seeded fit with early stopping, test metrics)
in a fresh process, with the settings' environment set before TensorFlow is imported:

- ``a-default``: as the project trains today;
- ``b-determinism``: ``tf.config.experimental.enable_op_determinism()`` before the model is built;
- ``c-determinism-no-onednn``: (b) plus ``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow's Eigen kernels);
- ``d-avx2``: another CPU as oneDNN sees it (``ONEDNN_MAX_CPU_ISA=AVX2``: no AVX-512 kernels);
- ``d-avx2-determinism``: (d) with (b);
- ``e-avx2-determinism-no-onednn``: (c) with oneDNN limited to AVX2 as in (d) (TensorFlow's Eigen
  matrix products still call oneDNN's sgemm);
- ``f-avx2-machine-determinism-no-onednn``: (e) on an AVX2 CPU as far as software can tell (numpy
  without its AVX-512 loops and OpenBLAS's Haswell kernels too).

Pairs that answer "does a setting carry across CPUs" are compared directly as well: (b, d-avx2-determinism),
(c, e), (c, f).

Runs go round-robin (every setting once, then again), so load from other work falls on all alike. For
each setting: are its runs bit-identical (weights, test predictions, metrics), how far its metrics and
weights are from ``a-default``'s first run, and the training time (``run_experiment`` wall seconds, and
per epoch since early stopping may stop at another epoch) with its ratio to ``a-default`` in this
invocation. Results are printed and written as JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
AVX2_CPU = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
NO_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "0"}
AVX2_MACHINE = AVX2_CPU | {"NPY_DISABLE_CPU_FEATURES": "AVX512_SPR AVX512_ICL X86_V4", "OPENBLAS_CORETYPE": "Haswell"}
# name -> (environment, enable_op_determinism)
SETTINGS: dict[str, tuple[dict[str, str], bool]] = {
    "a-default": ({}, False),
    "b-determinism": ({}, True),
    "c-determinism-no-onednn": (NO_ONEDNN, True),
    "d-avx2": (AVX2_CPU, False),
    "d-avx2-determinism": (AVX2_CPU, True),
    "e-avx2-determinism-no-onednn": (AVX2_CPU | NO_ONEDNN, True),
    "f-avx2-machine-determinism-no-onednn": (AVX2_MACHINE | NO_ONEDNN, True),
}
ACROSS_CPUS = (("b-determinism", "d-avx2-determinism"), ("c-determinism-no-onednn", "e-avx2-determinism-no-onednn"),
               ("c-determinism-no-onednn", "f-avx2-machine-determinism-no-onednn"), ("a-default", "d-avx2"))
CONTROLLED = {name for env, _ in SETTINGS.values() for name in env}
METRICS = ("uar", "war", "macro_f1", "ccc_arousal", "ccc_valence")


def train_config(epochs: int):
    from affectflow.config import TrainConfig

    defaults = TrainConfig()
    return replace(defaults, epochs=epochs, min_epochs=min(defaults.min_epochs, epochs - 1))


def fixed_features(folder: Path, clips: int, speakers: int) -> tuple[Path, dict]:
    """Write the corpus, fill the feature cache once; the frame (labels + record paths) as CSV."""
    from affectflow.cache import preprocess_clips
    from affectflow.config import PreprocessConfig
    from affectflow.synth import write_synthetic_batch

    labels = write_synthetic_batch(folder / "corpus", clips=clips, speakers=speakers, seed=0)
    started = time.perf_counter()
    results = preprocess_clips([folder / "corpus" / p for p in labels["path"]], folder / "features", PreprocessConfig())
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"clips failed to preprocess: {failed[:3]}")
    frame = labels.assign(record=[r.record for r in results])
    frame.to_csv(folder / "frame.csv", index=False)
    digest = hashlib.sha256()
    for record in frame["record"]:
        digest.update(Path(record).read_bytes())
    return folder / "frame.csv", {"clips": clips, "speakers": speakers, "preprocess_s": round(time.perf_counter() - started, 1),
                                  "records_sha256": digest.hexdigest()}


def child(frame_csv: Path, epochs: int, determinism: bool, weights_out: Path) -> dict:
    """One training run in this process; the environment was set by the parent."""
    import pandas as pd
    import tensorflow as tf

    if determinism:
        tf.config.experimental.enable_op_determinism()
    from affectflow.config import PreprocessConfig
    from affectflow.evaluation import predict_arrays
    from affectflow.experiment import run_experiment

    frame = pd.read_csv(frame_csv)
    config = train_config(epochs)
    started = time.perf_counter()
    experiment = run_experiment(frame, PreprocessConfig(), config, progress=lambda _: None)
    seconds = time.perf_counter() - started
    result = experiment.result
    weights = result.model.get_weights()
    np.savez(weights_out, *weights)
    outputs = predict_arrays(result.model, experiment.test)
    predictions = hashlib.sha256(b"".join(np.ascontiguousarray(outputs[k]).tobytes() for k in sorted(outputs)))
    return {
        "seconds": round(seconds, 2), "epochs_run": len(result.history["loss"]), "best_epoch": result.best_epoch,
        "s_per_epoch": round(seconds / len(result.history["loss"]), 3),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "val_loss": [float(v) for v in result.history["val_loss"]],
        "weights_sha256": hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest(),
        "predictions_sha256": predictions.hexdigest(),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "tensorflow": tf.__version__,
    }


def run_child(name: str, frame_csv: Path, epochs: int, weights_out: Path) -> dict:
    env_changes, determinism = SETTINGS[name]
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED} | env_changes
    command = [sys.executable, __file__, "--child", str(frame_csv), "--epochs", str(epochs),
               "--weights", str(weights_out)] + (["--determinism"] if determinism else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}",
                "stderr_tail": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _max_weight_diff(a: Path, b: Path) -> float:
    with np.load(a) as x, np.load(b) as y:
        return max(float(np.max(np.abs(x[k].astype(np.float64) - y[k]), initial=0.0)) for k in x.files)


def _relative_weight_diff(a: Path, b: Path) -> float:
    """||w_a - w_b|| / ||w_a|| over all weights (batch-norm statistics included)."""
    with np.load(a) as x, np.load(b) as y:
        diff = sum(float(np.sum((x[k].astype(np.float64) - y[k]) ** 2)) for k in x.files)
        norm = sum(float(np.sum(x[k].astype(np.float64) ** 2)) for k in x.files)
    return round((diff / norm) ** 0.5, 6) if norm else 0.0


def compare(runs: dict[str, list[dict]], weights: dict[str, list[Path]], first: str, second: str) -> dict:
    """The first runs of two settings side by side."""
    a, b = runs[first][0], runs[second][0]
    if "error" in a or "error" in b:
        return {"error": a.get("error") or b.get("error")}
    return {"bit_identical": a["weights_sha256"] == b["weights_sha256"],
            "max_weight_diff": _max_weight_diff(weights[first][0], weights[second][0]),
            "relative_weight_diff": _relative_weight_diff(weights[first][0], weights[second][0]),
            "metric_diff": {m: round(b["metrics"][m] - a["metrics"][m], 4) for m in METRICS}}


def summarise(runs: dict[str, list[dict]], weights: dict[str, list[Path]], reference: str) -> dict:
    ref_run, ref_weights = runs[reference][0], weights[reference][0]
    ref_seconds = statistics.mean(r["seconds"] for r in runs[reference])
    ref_per_epoch = statistics.mean(r["s_per_epoch"] for r in runs[reference])
    table = {}
    for name, found in runs.items():
        ok = [r for r in found if "error" not in r]
        if len(ok) < len(found):
            table[name] = {"error": next(r["error"] for r in found if "error" in r)}
            continue
        paths = weights[name]
        seconds = statistics.mean(r["seconds"] for r in ok)
        per_epoch = statistics.mean(r["s_per_epoch"] for r in ok)
        table[name] = {
            "env": SETTINGS[name][0], "op_determinism": SETTINGS[name][1],
            "runs_bit_identical": len({(r["weights_sha256"], r["predictions_sha256"]) for r in ok}) == 1,
            "runs_metrics_identical": all(r["metrics"] == ok[0]["metrics"] for r in ok),
            "within_setting_max_weight_diff": max((_max_weight_diff(paths[0], p) for p in paths[1:]), default=0.0),
            "within_setting_max_metric_diff": max(abs(r["metrics"][m] - ok[0]["metrics"][m]) for r in ok for m in METRICS),
            "bit_identical_to_" + reference: ok[0]["weights_sha256"] == ref_run["weights_sha256"],
            "max_weight_diff_to_" + reference: _max_weight_diff(ref_weights, paths[0]),
            "relative_weight_diff_to_" + reference: _relative_weight_diff(ref_weights, paths[0]),
            "metric_diff_to_" + reference: {m: round(ok[0]["metrics"][m] - ref_run["metrics"][m], 4) for m in METRICS},
            "best_epochs": [r["best_epoch"] for r in ok], "epochs_run": [r["epochs_run"] for r in ok],
            "metrics": {m: [round(r["metrics"][m], 4) for r in ok] for m in METRICS},
            "seconds": [r["seconds"] for r in ok], "s_per_epoch": [r["s_per_epoch"] for r in ok],
            "time_ratio_to_" + reference: round(seconds / ref_seconds, 3),
            "per_epoch_ratio_to_" + reference: round(per_epoch / ref_per_epoch, 3),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=180)
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--out", type=Path, default=RESULTS / "reproducibility.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--determinism", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.determinism, args.weights)))
        return

    names = args.settings.split(",")
    if "a-default" not in names:
        names.insert(0, "a-default")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    weights: dict[str, list[Path]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="affectflow-repro-") as scratch:
        frame_csv, features = fixed_features(Path(scratch), args.clips, args.speakers)
        print(f"fixed feature set: {features}", flush=True)
        for repeat in range(args.repeats):
            for name in names:
                path = Path(scratch) / f"{name}-{repeat}.npz"
                run = run_child(name, frame_csv, args.epochs, path)
                runs[name].append(run)
                weights[name].append(path)
                shown = run.get("error") or (f"{run['seconds']:6.1f} s, {run['epochs_run']} epochs, "
                                             f"UAR {run['metrics']['uar']:.4f}, weights {run['weights_sha256'][:12]}")
                print(f"run {repeat + 1} {name:30s} {shown}", flush=True)
        table = summarise(runs, weights, "a-default")
        across = {f"{a} vs {b}": compare(runs, weights, a, b) for a, b in ACROSS_CPUS if a in runs and b in runs}
    for name, row in table.items():
        print(f"{name:30s} " + ("error: " + row["error"] if "error" in row else
              f"identical runs {row['runs_bit_identical']!s:5s}  vs a-default: "
              f"|dw|/|w| {row['relative_weight_diff_to_a-default']:.3f}  dUAR {row['metric_diff_to_a-default']['uar']:+.4f}  "
              f"time x{row['time_ratio_to_a-default']:.2f} (per epoch x{row['per_epoch_ratio_to_a-default']:.2f})"))
    for pair, row in across.items():
        print(f"{pair:70s} {row}")
    from importlib.metadata import version

    report = {
        "benchmark": "reproducibility", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": features, "train_config": train_config(args.epochs).to_dict(), "repeats": args.repeats,
        "machine": {"cpu": platform.processor() or platform.machine(), "visible_cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0],
                    "versions": {p: version(p) for p in ("tensorflow", "keras", "numpy")}},
        "settings": table, "across_cpus": across, "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
