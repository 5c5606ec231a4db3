"""Human-readable outputs of a run: plots (confusion matrix, training curves) and metric tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from affectflow.metrics import HEADLINE_METRICS, expected_calibration_error  # noqa: E402
from affectflow.tables import markdown_table  # noqa: E402


def confusion_matrix_png(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (recall on the diagonal) with raw counts in each cell."""
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.7 * len(classes)))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center",
                    color="white" if normalised[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title or "confusion matrix (rows: recall)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves_png(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """One panel per loss (training and validation), epochs on the x axis."""
    names = sorted(k for k in history if "loss" in k and not k.startswith("val_"))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def reliability_png(probabilities: Mapping[str, np.ndarray], labels: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Reliability diagram: accuracy against confidence per confidence bin, one line per set of probabilities
    (e.g. raw softmax and calibrated), with its expected calibration error; the diagonal is perfect."""
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, probs in probabilities.items():
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
        which = np.minimum((confidence * bins).astype(int), bins - 1)
        used = [b for b in range(bins) if np.any(which == b)]
        ax.plot([confidence[which == b].mean() for b in used], [correct[which == b].mean() for b in used],
                marker="o", label=f"{name}: ECE {expected_calibration_error(probs, labels):.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability on the test split ({len(labels)} clips)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def metrics_markdown(metrics: Mapping[str, float], title: str = "Test metrics") -> str:
    """A two-column Markdown table of the headline metrics, then per-class ones."""
    headline = [k for k in HEADLINE_METRICS if k in metrics]
    rest = sorted(k for k in metrics if k not in headline)
    rows = [{"metric": key, "value": int(metrics[key]) if key == "n" else float(metrics[key])}
            for key in headline + rest]
    return f"### {title}\n\n" + markdown_table(rows, ["metric", "value"], float_format=".4f") + "\n"


@dataclass
class RunReport:
    """The files that describe one run, drawn once: MLflow logs them and Prefect shows them."""

    plots: dict[str, Path] = field(default_factory=dict)    # name -> PNG ("confusion_matrix", "training_curves")
    tables: dict[str, Path] = field(default_factory=dict)   # file name -> Markdown file


def training_report(history: Mapping[str, Sequence[float]], metrics: Mapping[str, float],
                    confusion: np.ndarray | None, classes: Sequence[str], folder: Path,
                    tables: Mapping[str, str] | None = None, title: str = "Test metrics") -> RunReport:
    """Training curves, the confusion matrix (for an emotion head), the metric table and ``tables``
    (file name -> Markdown) written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    report = RunReport()
    report.plots["training_curves"] = training_curves_png(history, folder / "training_curves.png")
    if confusion is not None:
        report.plots["confusion_matrix"] = confusion_matrix_png(confusion, classes, folder / "confusion_matrix.png")
    for name, text in {"test_metrics.md": metrics_markdown(metrics, title), **(tables or {})}.items():
        (folder / name).write_text(text)
        report.tables[name] = folder / name
    return report
