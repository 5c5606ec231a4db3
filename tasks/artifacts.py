"""Publishing run outputs on the Prefect Artifacts page: one key per dataset and kind, each with a description.

Keys stay stable (``<dataset>-<kind>``), so the Artifacts page keeps one history per dataset and table and
EmoDB's confusion matrix never replaces the synthetic one as "latest".
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from affectflow.reports import RunReport
from affectflow.tables import markdown_table

# Artifact kind and description per report file (the same files MLflow logged).
REPORT_ARTIFACTS = {
    "training_curves": ("training-curves", "Loss and metrics per epoch, training and validation."),
    "confusion_matrix": ("test-confusion-matrix", "Confusion matrix on the held-out speakers (row-normalised)."),
    "test_metrics.md": ("test-metrics", "UAR, WAR, macro-F1 and CCC over the whole test split (unseen speakers)."),
    "test_by_group.md": ("test-by-group", "Test metrics per speaker and per group column (sex, age band, ...)."),
    "test_ablation.md": ("test-ablation", "Test metrics with each modality hidden: what each input contributes."),
    "reliability": ("test-reliability", "Confidence against accuracy on the test split, before and after the "
                                        "temperature fitted on the validation speakers (ECE in the legend)."),
}


def artifact_key(*parts: str) -> str:
    """Prefect's key alphabet (lowercase letters, digits, dashes): ``artifact_key("EmoDB", "x_y") == "emodb-x-y"``."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def markdown_with_image(key: str, title: str, image: Path, body: str = "", description: str | None = None) -> None:
    """A Markdown artifact with the PNG inlined, so the Prefect UI shows it without a file server."""
    encoded = base64.b64encode(image.read_bytes()).decode()
    create_markdown_artifact(key=key, description=description,
                             markdown=f"## {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n{body}")


def publish_report(report: RunReport, dataset: str, title: str) -> None:
    """Every plot and table of a run's report as an artifact of ``dataset``."""
    for name, image in report.plots.items():
        kind, description = REPORT_ARTIFACTS.get(name, (name, None))
        markdown_with_image(artifact_key(dataset, kind), f"{title}: {name.replace('_', ' ')}", image,
                            description=description)
    for name, table in report.tables.items():
        kind, description = REPORT_ARTIFACTS.get(name, (Path(name).stem, None))
        create_markdown_artifact(key=artifact_key(dataset, kind), markdown=table.read_text(), description=description)


def publish_summary(dataset: str, title: str, facts: dict[str, str], links: dict[str, str],
                    metrics: dict[str, float]) -> None:
    """The one artifact an operator opens first: what ran, where its outputs are, how good it is."""
    lines = [f"## {title}", "", *(f"- **{name}**: {value}" for name, value in facts.items())]
    lines += ["", *(f"- [{name}]({url})" if url.startswith(("http://", "https://")) else f"- {name}: `{url}`"
                    for name, url in links.items())]
    lines += ["", markdown_table([{"metric": k, "value": int(v) if k == "n" else v} for k, v in metrics.items()])]
    create_markdown_artifact(key=artifact_key(dataset, "run-summary"), markdown="\n".join(lines),
                             description=f"Summary of the latest {dataset} training run: links and test metrics.")
