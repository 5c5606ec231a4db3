"""Validation cost per clip: the media probe and the GX suite, at 100 and 1,000 clips, and what GX's file-backed
project (stored result, Data Docs page and index) adds over the ephemeral context the project used before.

    python benchmarks/validation.py [--sizes 100,1000] [--distinct 200] [--repeats 3] [--history 150]
                                    [--out benchmarks/results/validation.json]

Clips are 1 s 64x64 synthetic ones (``affectflow.synth.write_synthetic_batch``): ``--distinct`` are encoded,
larger batches hard-link them under new names (the probe opens every row's file, nothing is cached). For each
size, medians of ``--repeats`` runs of:

- probe: ``checked_frame`` (path checks, container header, decode of the first frame and of the audio);
- gx: the suite through the batch's checkpoint of a file-backed project, as ``validate_batch`` runs it
  (result stored, its Data Docs page and the site index built);
- gx_ephemeral: the same suite and frame through an ephemeral context's validation definition, no store and no
  Data Docs (the former ``validate_batch``).

``--history`` more validations into one project show whether a run slows as the stored history grows (the
Data Docs index lists the latest 100 results only). Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from affectflow.synth import write_synthetic_batch
from affectflow.validation import (
    _checkpoint_name,
    _run_suite,
    checked_frame,
    full_suite,
    read_labels,
    suite_for,
    validate_batch,
)

RESULTS = Path(__file__).resolve().parent / "results"


def timed(action, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls of ``action`` and its last value."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = action()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), value


def batch_of(pool: Path, size: int, out: Path) -> Path:
    """A batch of ``size`` rows whose clips hard-link the pool's, cycling through them under new names."""
    labels = pd.read_csv(pool / "labels.csv", dtype=str)
    rows = labels.iloc[[i % len(labels) for i in range(size)]].reset_index(drop=True)
    (out / "clips").mkdir(parents=True)
    for i, source in enumerate(rows["path"]):
        os.link(pool / source, out / "clips" / f"c{i:05d}.mp4")
    rows["path"] = [f"clips/c{i:05d}.mp4" for i in range(size)]
    rows.to_csv(out / "labels.csv", index=False)
    return out


def ephemeral_definition(suite: str):
    """The former path: an ephemeral context's validation definition of ``suite``, built once."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas(suite).add_dataframe_asset(suite).add_batch_definition_whole_dataframe(
        suite)
    return context.validation_definitions.add(gx.ValidationDefinition(
        name=suite, data=batch, suite=context.suites.add(gx.ExpectationSuite(**full_suite(suite)))))


def measure(batch: Path, root: Path, repeats: int) -> dict:
    """Probe and GX seconds for one batch (a first, untimed ``validate_batch`` opens the project)."""
    assert validate_batch(batch, root).success
    labels = read_labels(batch)
    probe_s, (frame, _) = timed(lambda: checked_frame(batch, labels), repeats)
    dataset = str(labels["dataset"].iloc[0])
    suite = suite_for(dataset)
    gx_s, _ = timed(lambda: _run_suite(frame, suite, _checkpoint_name(dataset, suite), batch.name, root), repeats)
    definition = ephemeral_definition(suite)
    ephemeral_s, _ = timed(lambda: definition.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE"),
                           repeats)
    clips = len(labels)
    return {"clips": clips, "probe_s": probe_s, "gx_s": gx_s, "gx_ephemeral_s": ephemeral_s,
            "total_s": probe_s + gx_s, "per_clip_ms": {"probe": 1000 * probe_s / clips, "gx": 1000 * gx_s / clips,
                                                         "total": 1000 * (probe_s + gx_s) / clips},
            "file_backed_added_s": gx_s - ephemeral_s}


def history(batch: Path, root: Path, runs: int) -> dict:
    """Seconds of the GX run (file-backed) for the first and last 10 of ``runs`` validations into one project."""
    labels = read_labels(batch)
    frame, _ = checked_frame(batch, labels)
    dataset = str(labels["dataset"].iloc[0])
    suite = suite_for(dataset)
    seconds = [timed(lambda: _run_suite(frame, suite, _checkpoint_name(dataset, suite), batch.name, root), 1)[0]
               for _ in range(runs)]
    return {"runs": runs, "first_10_median_s": statistics.median(seconds[:10]),
            "last_10_median_s": statistics.median(seconds[-10:]),
            "stored_results": len(list((root / "uncommitted" / "validations").rglob("*.json")))}


def run(sizes: list[int], distinct: int, repeats: int, runs: int, out: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="affectflow-validation-bench-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        write_synthetic_batch(work / "pool", clips=distinct, speakers=distinct // 10, seconds=1.0, size=64)
        print(f"{distinct} distinct clips written in {time.perf_counter() - started:.0f} s", flush=True)
        results = []
        for size in sizes:
            result = measure(batch_of(work / "pool", size, work / f"batch-{size}"), work / f"gx-{size}" / "gx",
                             repeats)
            print(json.dumps(result), flush=True)
            results.append(result)
        growth = history(work / f"batch-{sizes[0]}", work / "gx-history" / "gx", runs) if runs else None
    outcome = {
        "benchmark": "validation", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "clip": "1 s 64x64 25 fps H.264 + AAC (affectflow.synth)", "distinct_clips": distinct, "repeats": repeats,
        "sizes": results, "history": growth,
        "machine": {"cpu": platform.processor() or platform.machine(), "visible_cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0],
                    "versions": {name: version(name) for name in ("great_expectations", "pandas", "decord")}},
    }
    out.write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="batch sizes in clips (default 100,1000)")
    parser.add_argument("--distinct", type=int, default=200, help="distinct clips encoded (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per phase (default 3)")
    parser.add_argument("--history", type=int, default=150, help="validations into one project (default 150)")
    parser.add_argument("--out", type=Path, default=RESULTS / "validation.json", help="JSON results file")
    args = parser.parse_args()
    run([int(size) for size in args.sizes.split(",")], args.distinct, args.repeats, args.history, args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
