"""The README's result tables are the rendering of the measured results file (``make results``), never typed."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def results_module():
    spec = importlib.util.spec_from_file_location("results", ROOT / "benchmarks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_blocks_match_the_results_file():
    results = results_module()
    rendered = results.render(json.loads(results.RESULTS.read_text()))
    in_readme = results.readme_blocks(results.README.read_text())
    assert set(rendered) == {"demo", "emodb", "ravdess"}
    assert in_readme == rendered, "README.md drifted from benchmarks/results/results.json: run `make results`"


def test_every_result_names_its_commit_and_machine():
    results = json.loads(results_module().RESULTS.read_text())
    for section in ("demo", "emodb", "ravdess"):
        made = results[section]["provenance"]
        assert made["commit"] and made["machine"]["cpu"] and made["machine"]["cores"] and made["date"]
