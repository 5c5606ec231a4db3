"""Training a fresh audio-visual model: frame CNNs over one batch of B x T frames against Keras's TimeDistributed.

    python benchmarks/frame_graph.py [--repeats 3] [--clips 12] [--epochs 3]
                                     [--out benchmarks/results/frame_graph.json]

Every fold, selection candidate and refit trains a fresh model, so TensorFlow builds its training and validation
graphs again each time. ``TimeDistributed`` over a static time axis unrolls its layer once per frame: 16 copies of
the frame CNN and of the face-crop CNN, and of their gradients. ``model._per_frame`` runs each CNN once over the
frames of all clips. Same process, same random inputs (the synthetic corpus's shapes: 16 frames of 64 x 64, face
geometry and crops, MFCC), the two builds alternate; per build the median over ``--repeats`` of

- ``first_fit_s``: ``training.train`` of a fresh model (graph building and the epochs: what a fold pays);
- ``steps_s``: the same epochs again on the fitted model (graphs already built: the steps alone).

Results are printed and written as JSON with the ratio TimeDistributed / per-frame batch.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from affectflow import model as model_module  # noqa: E402
from affectflow.arrays import Arrays  # noqa: E402
from affectflow.config import TrainConfig  # noqa: E402
from affectflow.runtime import gpus  # noqa: E402
from affectflow.training import class_weights, input_pipeline, prepare, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "neutral")
SHAPES = {"frames": (16, 64, 64, 3), "video_mask": (1,), "face": (16, 151), "face_crops": (16, 64, 64, 1),
          "face_mask": (16,), "mfcc": (301, 40), "audio_mask": (1,)}


def random_arrays(clips: int, seed: int) -> Arrays:
    """``clips`` clips of random inputs in ``SHAPES`` from 4 speakers, every modality present."""
    rng = np.random.default_rng(seed)
    inputs = {name: (rng.integers(0, 256, (clips, *shape), dtype=np.uint8) if name in ("frames", "face_crops")
                     else rng.random((clips, *shape), dtype=np.float32)) for name, shape in SHAPES.items()}
    inputs.update(video_mask=np.ones((clips, 1), np.float32), audio_mask=np.ones((clips, 1), np.float32),
                  face_mask=np.ones((clips, 16), np.float32))
    return Arrays(inputs, rng.integers(0, len(CLASSES), clips), rng.uniform(-1, 1, (clips, 2)).astype(np.float32),
                  np.array([f"spk{i % 4}" for i in range(clips)]))


def time_distributed(layer, clips):
    """The baseline: Keras's wrapper, unrolled over the static time axis."""
    from keras import layers

    return layers.TimeDistributed(layer)(clips)


def measure(build, train_set: Arrays, val_set: Arrays, config: TrainConfig) -> tuple[float, float]:
    """(first fit of a fresh model, the same epochs again) in seconds, with ``build`` as ``model._per_frame``."""
    model_module._per_frame = build
    start = time.perf_counter()
    fitted = train(train_set, val_set, CLASSES, config, progress=lambda _: None).model
    first = time.perf_counter() - start
    ready, _ = prepare(train_set, [], config)
    data = input_pipeline(ready, fitted.output_names, config.batch_size, config.seed,  # as ``train`` fed it
                          class_weights(ready.labels, len(CLASSES)))
    start = time.perf_counter()
    fitted.fit(data, epochs=config.epochs, verbose=0, shuffle=False)  # tf.data shuffles
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=12, help="training clips (as many validation clips)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "frame_graph.json")
    args = parser.parse_args()
    gpus()
    config = TrainConfig(epochs=args.epochs, min_epochs=0, refit=False, seed=5)
    train_set, val_set = random_arrays(args.clips, 0), random_arrays(args.clips, 1)
    builds = {"per_frame_batch": model_module._per_frame, "time_distributed": time_distributed}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in builds}
    for _ in range(args.repeats + 1):  # the first round warms TensorFlow up and is dropped
        for name, build in builds.items():
            runs[name].append(measure(build, train_set, val_set, config))
    medians = {name: {"first_fit_s": round(statistics.median(r[0] for r in results[1:]), 2),
                      "steps_s": round(statistics.median(r[1] for r in results[1:]), 2)}
               for name, results in runs.items()}
    first_fit = {name: m["first_fit_s"] for name, m in medians.items()}
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "clips": args.clips, "epochs": args.epochs, "repeats": args.repeats, "medians": medians,
        "ratio_first_fit": round(first_fit["time_distributed"] / first_fit["per_frame_batch"], 2),
        "machine": {"cpu": platform.processor() or platform.machine(), "visible_cpus": len(os.sched_getaffinity(0)),
                    "load_avg_1m": os.getloadavg()[0], "versions": {p: version(p) for p in ("tensorflow", "keras")}},
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
