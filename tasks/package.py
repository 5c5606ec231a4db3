"""Packaging task: the champion as a Bento."""

from __future__ import annotations

from prefect import get_run_logger, task

from affectflow.config import get_paths
from affectflow.promotion import package_champion
from affectflow.registry import configure
from tasks.policies import STORAGE_RETRIES


@task(name="champion-bento", **STORAGE_RETRIES)
def champion_bento(dataset: str, home: str) -> str:
    """Import the dataset's champion into the BentoML store and build its Bento; returns the Bento tag."""
    configure(get_paths(home))
    bento = package_champion(dataset)
    get_run_logger().info("built bento %s", bento)
    return bento
