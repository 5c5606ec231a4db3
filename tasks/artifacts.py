"""Publishing run outputs on the Prefect Artifacts page."""

from __future__ import annotations

import base64
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from affectflow.reports import RunReport

# Artifact key per report file: the keys stay stable so the Artifacts page keeps one history per table.
REPORT_KEYS = {"training_curves": "training-curves", "confusion_matrix": "test-confusion-matrix",
               "test_metrics.md": "test-metrics", "test_by_group.md": "test-by-group",
               "test_ablation.md": "test-ablation"}


def markdown_with_image(key: str, title: str, image: Path, body: str = "") -> None:
    """A Markdown artifact with the PNG inlined, so the Prefect UI shows it without a file server."""
    encoded = base64.b64encode(image.read_bytes()).decode()
    create_markdown_artifact(key=key, markdown=f"## {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n{body}")


def publish_report(report: RunReport, title: str) -> None:
    """Every plot and table of a run's report as an artifact (the same files MLflow logged)."""
    for name, image in report.plots.items():
        markdown_with_image(REPORT_KEYS.get(name, name.replace("_", "-")), f"{title}: {name.replace('_', ' ')}", image)
    for name, table in report.tables.items():
        create_markdown_artifact(key=REPORT_KEYS.get(name, Path(name).stem.replace("_", "-")),
                                 markdown=table.read_text())
