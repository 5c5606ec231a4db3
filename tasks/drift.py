"""Drift task: each accepted batch against the data its dataset's champion learnt from (``affectflow.drift``).

The report lands in the batch's store folder and on the Artifacts page (``<dataset>-drift-report``); a drifted
batch emits ``affectflow.batch.drifted``. Measuring drift is advice, not a gate: when it fails, the ingest does
not (the batch stays accepted) and the reason is logged as a warning.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from affectflow.config import get_paths
from affectflow.drift import REPORT_MD, batch_drift
from tasks.artifacts import artifact_key
from tasks.events import emit


@task(name="drift-report")
def drift_report(dataset: str, batch: str, home: str) -> dict:
    """``drift.json``/``drift.md`` of ``batch``, its artifact and, if it drifted, ``affectflow.batch.drifted``."""
    paths = get_paths(home)
    report = batch_drift(dataset, batch, paths)
    summary = report.to_dict()
    get_run_logger().info("drift of %s batch %s: %s (%d of %d features: %s)", dataset, batch,
                          "drifted" if report.drifted else "not drifted", len(report.drifted_features),
                          len(report.features), ", ".join(report.drifted_features) or "none")
    create_markdown_artifact(key=artifact_key(dataset, "drift-report"), markdown=report.markdown(),
                             description=f"Batch {batch} against the data the {dataset} champion learnt from: "
                                         "per-feature two-sample tests and the champion's predicted classes.")
    if report.drifted:
        emit("affectflow.batch.drifted", dataset, {
            "batch": batch, "clips": report.batch_clips, "reference": summary["reference"],
            "share_drifted": summary["share_drifted"], "group_shares": summary["group_shares"],
            "drifted_groups": report.drifted_groups, "threshold": report.threshold,
            "drifted_features": report.drifted_features,
            "prediction_drifted": report.predictions.get("drifted"),
            "report": str(paths.datasets / dataset / batch / REPORT_MD)})
    return summary


def drift_of_accepted(results: list[dict], home: str) -> None:
    """``drift_report`` for each batch the ingest accepted (its store folder's name); a failure is a warning."""
    for result in results:
        if result["status"] != "accepted":
            continue
        batch = Path(result["location"]).name
        try:
            drift_report(result["dataset"], batch, home)
        except Exception as err:  # noqa: BLE001 - advice must never undo an accepted batch
            get_run_logger().warning("drift of %s batch %s not measured (the batch stays accepted): %s: %s",
                                     result["dataset"], batch, type(err).__name__, err)
