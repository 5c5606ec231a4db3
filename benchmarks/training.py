"""Training input speed: an epoch from the feature cache against an epoch that decodes every clip.

    python benchmarks/training.py [--corpus both|synthetic|emodb] [--clips 48] [--epochs 3]
                                  [--out benchmarks/results/training.json]

Same model, same clips, same process, for each corpus:

- cached: preprocessing wrote each clip's record once; ``load_arrays`` read them (timed once, as
  ``cache_read_s``), ``training.prepare`` ran once, and every epoch is ``model.fit`` over
  ``training.input_pipeline`` on those arrays, which is what ``affectflow.training`` does;
- decoding: every epoch runs ``extract_features`` on every clip (video frames, faces, audio, MFCC,
  deltas, log-mel), stacks and prepares the result and fits the same epoch on it: what training pays
  per epoch without a cache.

Corpora: the built-in synthetic audio-visual clips (2 s, 128x128, 25 fps, face backend ``landmarks``:
video, face and audio encoders) and real EmoDB speech (``../shared/data/emodb``, audio only: the
model has only the audio encoder). The two kinds of epoch alternate, after one warm-up epoch each, so
load from other work on the machine falls on both alike; medians are reported with the ratio
decoding / cached. Results are printed and written as JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from affectflow.arrays import TRAINING_INPUTS, Arrays, load_arrays  # noqa: E402
from affectflow.cache import preprocess_clips  # noqa: E402
from affectflow.config import PreprocessConfig, TrainConfig  # noqa: E402
from affectflow.features import extract_features, stack_inputs, warm_up  # noqa: E402
from affectflow.labels import choose_classes, labelled_frame  # noqa: E402
from affectflow.training import input_pipeline, prepare  # noqa: E402

EMODB = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb"
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RATIO = 10.0


def synthetic_corpus(folder: Path, clips: int) -> pd.DataFrame:
    """``clips`` synthetic audio-visual clips from 4 speakers, labels with absolute paths."""
    from affectflow.synth import write_synthetic_batch

    speakers = max(1, min(4, clips // 6))
    frame = write_synthetic_batch(folder, clips=max(clips, 6 * speakers), speakers=speakers, seed=0).head(clips)
    return frame.assign(path=[str(folder / p) for p in frame["path"]])


def emodb_corpus(clips: int) -> pd.DataFrame:
    """The first ``clips`` EmoDB files (sorted names), labelled by the corpus adapter's rules."""
    from affectflow.datasets.emodb import scan

    rows = [clip.row for clip in scan(EMODB).clips][:clips]
    frame = pd.DataFrame(rows)
    return frame.assign(path=[str(EMODB / p) for p in frame["path"]])


class Model:
    """One compiled model and the means to run one epoch of it on given arrays."""

    def __init__(self, arrays: Arrays, classes: tuple[str, ...], config: TrainConfig):
        import keras

        from affectflow.model import build_model, compile_model

        keras.utils.set_random_seed(config.seed)
        self.prepared, _ = prepare(arrays, [], config)
        shapes = {name: array.shape[1:] for name, array in self.prepared.inputs.items()}
        self.model = compile_model(build_model(classes, shapes, config, self.prepared.inputs), config)
        self.config = config

    def epoch(self, arrays: Arrays) -> None:
        """One epoch on arrays already ``prepare``d (modalities kept, speakers aligned)."""
        data = input_pipeline(arrays, self.model.output_names, self.config.batch_size, self.config.seed)
        self.model.fit(data, epochs=1, verbose=0, shuffle=False)  # tf.data shuffles

    def decoding_epoch(self, frame: pd.DataFrame, classes: tuple[str, ...], cfg: PreprocessConfig) -> None:
        """One epoch that first extracts every clip again and prepares what it got."""
        ready, _ = prepare(decoded_arrays(frame, classes, cfg), [], self.config)
        self.epoch(ready)


def decoded_arrays(frame: pd.DataFrame, classes: tuple[str, ...], cfg: PreprocessConfig) -> Arrays:
    """What one decoding epoch feeds the model: every clip extracted again, stacked like the cache path."""
    records = [extract_features(path, cfg) for path in frame["path"]]
    index = {c: i for i, c in enumerate(classes)}
    return Arrays(stack_inputs(records, TRAINING_INPUTS), frame["emotion"].map(index).to_numpy(),
                  frame[["arousal", "valence"]].astype("float32").to_numpy(), frame["speaker"].astype(str).to_numpy())


def measure(name: str, frame: pd.DataFrame, epochs: int, cfg: PreprocessConfig, config: TrainConfig) -> dict:
    """Fill a temporary cache, then alternate cached and decoding epochs of one model."""
    classes = choose_classes(frame["emotion"])
    frame = labelled_frame(frame, classes)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        results = preprocess_clips(list(frame["path"]), cache, cfg)
        fill_s = time.perf_counter() - started
        failed = [r.error for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"{name}: clips failed to preprocess: {failed[:3]}")
        frame["record"] = [r.record for r in results]
        started = time.perf_counter()
        arrays = load_arrays(frame, classes)
        read_s = time.perf_counter() - started
        model = Model(arrays, classes, config)
        model.epoch(model.prepared)  # warm-up: graph tracing
        model.decoding_epoch(frame, classes, cfg)
        cached, decoding = [], []
        for _ in range(epochs):
            started = time.perf_counter()
            model.epoch(model.prepared)
            cached.append(time.perf_counter() - started)
            started = time.perf_counter()
            model.decoding_epoch(frame, classes, cfg)
            decoding.append(time.perf_counter() - started)
    cached_s, decoding_s = statistics.median(cached), statistics.median(decoding)
    result = {
        "clips": len(frame), "modalities": model.prepared.present(),
        "model_inputs": sorted(model.prepared.inputs), "cache_fill_s": round(fill_s, 3),
        "cache_read_s": round(read_s, 3),
        "cached_epoch_s": {"median": round(cached_s, 4), "all": [round(t, 4) for t in cached]},
        "decoding_epoch_s": {"median": round(decoding_s, 4), "all": [round(t, 4) for t in decoding]},
        "ratio": round(decoding_s / cached_s, 2),
        "ratio_with_cache_read_each_epoch": round(decoding_s / (cached_s + read_s), 2),
    }
    print(f"{name}: {len(frame)} clips, cached epoch {cached_s:.3f} s, decoding epoch {decoding_s:.3f} s "
          f"-> {result['ratio']:.1f}x (re-reading the cache every epoch: "
          f"{result['ratio_with_cache_read_each_epoch']:.1f}x)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["both", "synthetic", "emodb"], default="both")
    parser.add_argument("--clips", type=int, default=48, help="clips per corpus (default 48)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each kind (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS / "training.json")
    args = parser.parse_args()

    cfg, config = PreprocessConfig(), replace(TrainConfig(), batch_size=16)
    warm_up(cfg)
    corpora = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus in ("both", "synthetic"):
            corpora["synthetic"] = measure("synthetic", synthetic_corpus(Path(tmp) / "synthetic", args.clips),
                                           args.epochs, cfg, config)
        if args.corpus in ("both", "emodb"):
            if EMODB.exists():
                corpora["emodb"] = measure("emodb", emodb_corpus(args.clips), args.epochs, cfg, config)
            else:
                print(f"emodb: skipped, {EMODB} not found")
    report = {
        "benchmark": "training",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "target_ratio": TARGET_RATIO,
        "preprocess_config_hash": cfg.hash(),
        "train_config": {k: v for k, v in config.to_dict().items() if k in ("batch_size", "audio_encoder", "task")},
        "machine": {"cpu": platform.processor() or platform.machine(), "visible_cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0],
                    "versions": {p: version(p) for p in ("tensorflow", "keras", "decord", "librosa", "numpy")}},
        "corpora": corpora,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
