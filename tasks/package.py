"""Packaging task: the champion as a Bento."""

from __future__ import annotations

from prefect import get_run_logger, task

from affectflow.config import get_paths
from affectflow.packaging import build_bento, save_to_bentoml
from affectflow.registry import champion_uri, configure, load_predictor
from tasks.policies import STORAGE_RETRIES


@task(name="champion-bento", **STORAGE_RETRIES)
def champion_bento(dataset: str, home: str) -> str:
    """Import the dataset's champion into the BentoML store and build a Bento; returns its tag."""
    configure(get_paths(home))
    predictor = load_predictor(champion_uri(dataset))
    bento = build_bento(save_to_bentoml(predictor.model, predictor.card))
    get_run_logger().info("built bento %s", bento)
    return bento
