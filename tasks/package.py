"""Packaging task: the champion as a Bento."""

from __future__ import annotations

from prefect import get_run_logger, task

from affectflow.config import get_paths
from affectflow.packaging import build_bento, save_to_bentoml
from affectflow.registry import CHAMPION, configure, load_predictor


@task(name="champion-bento")
def champion_bento(model_name: str, home: str) -> str:
    """Import ``models:/NAME@champion`` into the BentoML store and build a Bento; returns its tag."""
    configure(get_paths(home))
    predictor = load_predictor(f"models:/{model_name}@{CHAMPION}")
    bento = build_bento(save_to_bentoml(predictor.model, predictor.card))
    get_run_logger().info("built bento %s", bento)
    return bento
