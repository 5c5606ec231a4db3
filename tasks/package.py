"""Packaging tasks: the champion as a Bento, and the champion and the newest Bento made to agree."""

from __future__ import annotations

import logging

from prefect import get_run_logger, task

from affectflow.config import get_paths
from affectflow.promotion import package_champion, reconcile
from affectflow.registry import configure
from tasks.policies import STORAGE_RETRIES


@task(name="champion-bento", **STORAGE_RETRIES)
def champion_bento(dataset: str, home: str) -> str:
    """Import the dataset's champion into the BentoML store and build its Bento; returns the Bento tag."""
    configure(get_paths(home))
    bento = package_champion(dataset)
    get_run_logger().info("built bento %s", bento)
    return bento


@task(name="served-champion")
def served_champion(dataset: str, home: str) -> str | None:
    """Before training: if an earlier run was killed after the champion alias moved but before its Bento was
    built, build it now (``promotion.reconcile``); nothing to do costs about a second. Returns the Bento
    tag that serves the champion, if there is a champion. A failure here is a warning: training goes on
    (``affectflow models reconcile`` and ``affectflow serve`` try again)."""
    logger = get_run_logger()
    try:
        configure(get_paths(home))
        [found] = reconcile([dataset])
    except Exception as err:  # noqa: BLE001 - the training itself does not depend on it
        logger.warning("could not check that the newest Bento serves the champion: %s", err)
        return None
    logger.log(logging.WARNING if found.built else logging.INFO, "serving: %s", found.note)
    return found.bento if found.champion else None
