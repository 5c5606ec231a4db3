"""The README's result tables, measured: ``make results`` runs this and the README quotes its output.

    python benchmarks/results.py [--seeds 13,14,15] [--skip-demo] [--skip-emodb] [--skip-ravdess] [--no-readme]

Runs, each in a fresh temporary home and through the ``affectflow`` command as a user would:

- ``affectflow demo`` (the built-in synthetic corpus: dataset version, test metrics, modality ablation);
- ``affectflow train --dataset emodb --cv 7`` for each seed (``../shared/data/emodb``: mean ± std over folds,
  pooled metrics, per-class recall, metrics by sex, and the service's view: unaligned single clips and clips
  aligned as speaker calibration does after a few clips of their speaker), and one plain ``affectflow train --dataset emodb`` (the
  ``train-emodb`` deployment's run: one speaker-independent test split) to show beside the CV estimate;
- the same for RAVDESS speech (``../shared/data/ravdess-speech``, ``--cv 4``: 16 actors, 4 actor-disjoint folds
  of 2 actresses and 2 actors).

Writes ``benchmarks/results/results.json`` (with the commit and machine it came from) and
``results.md``, and rewrites the README's blocks between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` (``tests/unit/test_results.py`` keeps the two equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "results.json"
README = ROOT / "README.md"
DATA = ROOT.parent / "shared" / "data"
SEEDS = (13, 14, 15)


class Corpus(NamedTuple):
    name: str          # adapter and dataset name
    title: str
    source: Path
    k: int             # folds
    folds: str         # how the folds are made, for the table
    chance: str        # UAR by chance, as written


CORPORA = {"emodb": Corpus("emodb", "EmoDB", DATA / "emodb", 7, "7 folds of 1", "0.14"),
           "ravdess": Corpus("ravdess", "RAVDESS speech", DATA / "ravdess-speech", 4, "4 folds of 2 + 2", "0.125")}


def affectflow(home: Path, *args: str, timeout: int = 3600) -> dict:
    """Run the command in ``home``; its last stdout line is the JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # each run in its own home's store
    done = subprocess.run([sys.executable, "-m", "cli", "--home", str(home), *args], cwd=ROOT, text=True, env=env,
                          capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"affectflow {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": version("tensorflow"), "platform": platform.platform()}


def commit() -> str:
    """HEAD, marked ``+uncommitted`` when tracked files differ from it, except this script's own outputs (the
    results files and the README it rewrites: the sections measured first are written before the later ones)."""
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    own = [":(exclude)" + str(path.relative_to(ROOT)) for path in (RESULTS, RESULTS.with_suffix(".md"), README)]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *own], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+uncommitted" if dirty else "")


def run_demo() -> dict:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="affectflow-results-") as home:
        summary = affectflow(Path(home), "demo")
        ablation = Path(mlflow.artifacts.download_artifacts(
            run_id=summary["run_id"], artifact_path="reports/test_ablation.md",
            tracking_uri=f"sqlite:///{home}/mlflow.db")).read_text()
    return {"seconds": summary["seconds"], "dataset_version": summary["dataset_version"],
            "test_speakers": summary["test_speakers"], "metrics": summary["metrics"], "ablation": ablation}


def run_corpus(corpus: Corpus, seeds: list[int]) -> dict:
    with tempfile.TemporaryDirectory(prefix="affectflow-results-") as home:
        home = Path(home)
        affectflow(home, "datasets", "import", corpus.name, str(corpus.source), "--out",
                   str(home / "inbox" / corpus.name), "--link")
        affectflow(home, "ingest")
        folds = {}
        for seed in seeds:
            result = affectflow(home, "train", "--dataset", corpus.name, "--cv", str(corpus.k), "--seed", str(seed))
            report = json.loads(Path(result["report"], "crossval.json").read_text())
            groups = {f"{row['group']}={row['value']}": row["uar"]
                      for row in _csv_rows(Path(result["report"], "groups.csv")) if row["group"] == "sex"}
            folds[str(seed)] = {"summary": report["summary"], "pooled": report["pooled"],
                                "pooled_unaligned": report.get("pooled_unaligned", {}), "by_sex": groups,
                                "calibration_curve": report.get("calibration_curve", {}), "seconds": report["seconds"]}
        single = affectflow(home, "train", "--dataset", corpus.name)
    return {"cv": folds, "single": {"metrics": single["metrics"], "test_speakers": single["test_speakers"],
                                    "seed": 13}}


def _csv_rows(path: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(path, dtype={"value": str}).to_dict("records")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def demo_block(demo: dict, stamp: str) -> str:
    m = demo["metrics"]
    return "\n".join([
        f"`make demo` ({stamp}): dataset version `{demo['dataset_version']}`, {demo['seconds']:.0f} s after "
        f"installation; test split of {int(m['n'])} clips from {demo['test_speakers']} speakers never seen in "
        "training (chance UAR 0.167).",
        "",
        "| UAR | WAR | macro-F1 | CCC arousal | CCC valence |",
        "|---|---|---|---|---|",
        f"| {_f(m['uar'])} | {_f(m['war'])} | {_f(m['macro_f1'])} | {_f(m['ccc_arousal'])} | {_f(m['ccc_valence'])} |",
        "",
        "Modality ablation of the same run (each modality hidden in turn):",
        "",
        demo["ablation"].split("\n", 1)[1].strip(),  # the table without its heading
    ])


def corpus_block(corpus: Corpus, measured: dict, stamp: str) -> str:
    lines = [f"{corpus.title} ({stamp}):", "",
             "| run | test speakers | UAR (mean ± std over folds) | pooled UAR | WAR (mean) | CCC arousal / valence "
             "(pooled) | unaligned single clips (pooled UAR) |",
             "|---|---|---|---|---|---|---|"]
    means, pooled = [], []
    for seed, cv in measured["cv"].items():
        s, p = cv["summary"], cv["pooled"]
        means.append(s["uar"]["mean"])
        pooled.append(p["uar"])
        lines.append(f"| `--cv {corpus.k} --seed {seed}` | {corpus.folds} | {s['uar']['mean']:.3f} ± "
                     f"{s['uar']['std']:.3f} | {p['uar']:.3f} | {s['war']['mean']:.3f} | {_f(p.get('ccc_arousal'))} / "
                     f"{_f(p.get('ccc_valence'))} | {_f(cv['pooled_unaligned'].get('uar'))} |")
    if len(means) > 1:
        lines.append(f"| **mean of the {len(means)} seeds** | | **{sum(means) / len(means):.3f}** | "
                     f"**{sum(pooled) / len(pooled):.3f}** | | | |")
    single = measured["single"]
    m = single["metrics"]
    lines.append(f"| `train --dataset {corpus.name}` (one split, seed {single['seed']}) | {single['test_speakers']} | "
                 f"{m['uar']:.3f} (one split) | | {m['war']:.3f} | {_f(m.get('ccc_arousal'))} / "
                 f"{_f(m.get('ccc_valence'))} | |")
    first = next(iter(measured["cv"].values()))
    recall = sorted(((k.removeprefix("recall_"), v["mean"]) for k, v in first["summary"].items()
                     if k.startswith("recall_")), key=lambda kv: -kv[1])
    seed = next(iter(measured["cv"]))
    lines += ["", f"Per-class recall, seed {seed}, mean over folds: "
              + ", ".join(f"{name} {value:.2f}" for name, value in recall)
              + "; by sex (pooled UAR): " + ", ".join(f"{k.split('=')[1]} {v:.2f}" for k, v in first["by_sex"].items())
              + f". Chance is {corpus.chance}."]
    curves = {seed: cv["calibration_curve"] for seed, cv in measured["cv"].items() if cv.get("calibration_curve")}
    if curves:
        points = list(next(iter(curves.values())))
        counts = ", ".join(p for p in points if p.isdigit())
        lines += ["", "The service's view (pooled UAR of the same fold models): a single clip of an unknown speaker "
                  f"(unaligned), then aligned as speaker calibration does after {counts} clips of its speaker "
                  "(their statistics shrunk towards the population's), and with all of them (the evaluation "
                  "above):", "",
                  "| seed | " + " | ".join(points) + " |", "|---" * (len(points) + 1) + "|"]
        lines += [f"| {seed} | " + " | ".join(_f(curve.get(point)) for point in points) + " |"
                  for seed, curve in curves.items()]
    return "\n".join(lines)


def provenance() -> dict:
    """Where a section's numbers came from: the commit, the machine and the date."""
    return {"commit": commit(), "machine": machine(), "date": datetime.now(UTC).isoformat()}


def _stamp(section: dict) -> str:
    made = section["provenance"]
    return f"commit {made['commit']}, {made['machine']['cores']} cores {made['machine']['cpu']}, {made['date'][:10]}"


def render(results: dict) -> dict[str, str]:
    """README block name -> Markdown, from a results file (each section stamped with its own provenance)."""
    blocks = {}
    if "demo" in results:
        blocks["demo"] = demo_block(results["demo"], _stamp(results["demo"]))
    for name, corpus in CORPORA.items():
        if name in results:
            blocks[name] = corpus_block(corpus, results[name], _stamp(results[name]))
    return blocks


def readme_blocks(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip() for m in
            re.finditer(r"<!-- results:(\w+) -->\n(.*?)<!-- /results:\1 -->", text, flags=re.S)}


def update_readme(blocks: dict[str, str]) -> None:
    text = README.read_text()
    for name, block in blocks.items():
        text, count = re.subn(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)",
                              lambda m, b=block: f"{m.group(1)}{b}\n{m.group(2)}", text, flags=re.S)
        if not count:
            raise SystemExit(f"README.md has no <!-- results:{name} --> block")
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="cross-validation seeds")
    parser.add_argument("--skip-demo", action="store_true")
    for name in CORPORA:
        parser.add_argument(f"--skip-{name}", action="store_true")
    parser.add_argument("--no-readme", action="store_true", help="write the results files only")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    sections = {"demo": (args.skip_demo, run_demo),
                **{name: (getattr(args, f"skip_{name}"), lambda c=corpus: run_corpus(c, seeds))
                   for name, corpus in CORPORA.items()}}
    for name, (skip, run) in sections.items():
        if not skip:  # each section is saved as soon as it is measured
            results[name] = {**run(), "provenance": provenance()}
            RESULTS.write_text(json.dumps(results, indent=2, default=float) + "\n")
    blocks = render(results)
    RESULTS.with_suffix(".md").write_text("\n\n".join(blocks.values()) + "\n")
    if not args.no_readme:
        update_readme(blocks)
    print("\n\n".join(blocks.values()))


if __name__ == "__main__":
    main()
