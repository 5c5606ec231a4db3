"""Screenshots of what an operator sees in the Prefect UI, for docs/operations.md (headless Chromium).

    PREFECT_API_URL=http://127.0.0.1:4200/api python ops/screenshots.py [--out docs/screenshots]

Takes the deployments page, the newest completed training run's page and its run-summary artifact.
Needs Debian's chromium (`apt-get install chromium`) and a server with at least one completed training run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import httpx

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=15000"]


def screenshot(url: str, out: Path, size: str = "1440,1100") -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/screenshots", type=Path)
    args = parser.parse_args()
    api_url = os.environ["PREFECT_API_URL"].rstrip("/")
    ui = api_url.removesuffix("/api")
    api = httpx.Client(base_url=api_url, timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    [run] = api.post("/flow_runs/filter", json={
        "flow_runs": {"name": {"like_": "train-"}, "state": {"type": {"any_": ["COMPLETED"]}}},
        "sort": "START_TIME_DESC", "limit": 1}).raise_for_status().json()
    [summary] = api.post("/artifacts/filter", json={
        "artifacts": {"flow_run_id": {"any_": [run["id"]]}, "key": {"like_": "run-summary"}},
        "limit": 1}).raise_for_status().json()
    screenshot(f"{ui}/deployments", args.out / "deployments.png")
    screenshot(f"{ui}/runs/flow-run/{run['id']}", args.out / "flow-run.png")
    screenshot(f"{ui}/artifacts/artifact/{summary['id']}", args.out / "run-summary.png", size="1440,900")


if __name__ == "__main__":
    main()
