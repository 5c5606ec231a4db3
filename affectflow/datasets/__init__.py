"""Corpus adapters: each turns one corpus's native layout into a batch folder (media + labels.csv).

``import_dataset("emodb", Path("../shared/data/emodb"), Path("inbox/emodb-1"))`` writes a batch that
``affectflow.ingest`` validates and accepts; ``ADAPTERS`` lists every adapter with its options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from affectflow.datasets import crema_d, csv_mapping, emodb, enterface, mafw, ravdess
from affectflow.datasets.base import IMPORT_RECORD, Adapter, Option, Progress, check_target, write_batch
from affectflow.datasets.csv_mapping import parse_mapping

ADAPTERS: dict[str, Adapter] = {module.ADAPTER.name: module.ADAPTER
                                for module in (crema_d, enterface, mafw, ravdess, emodb, csv_mapping)}

# Options every adapter takes; the adapter-specific ones are in ``ADAPTERS[name].options``.
COMMON_OPTIONS: dict[str, Option] = {
    "link": Option("hard-link media into the batch instead of copying (copies when linking fails)", flag=True),
    "dataset": Option("dataset name in the store (default: the adapter name; required for csv)"),
}

__all__ = ["ADAPTERS", "COMMON_OPTIONS", "IMPORT_RECORD", "Adapter", "Option", "import_dataset", "parse_mapping"]


def _checked(adapter: Adapter, options: dict[str, Any]) -> dict[str, Any]:
    """Options without the unset ones, after checking names and choices."""
    options = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(options) - set(adapter.options))
    if unknown:
        raise ValueError(f"adapter {adapter.name} has no option {', '.join(unknown)}; "
                         f"its options: {', '.join(adapter.options) or 'none'}")
    for name, value in options.items():
        choices = adapter.options[name].choices
        if choices and value not in choices:
            raise ValueError(f"{adapter.name} option {name} must be one of {', '.join(choices)}, got {value!r}")
    return options


def import_dataset(name: str, source: Path, out: Path, link: bool = False, dataset: str | None = None,
                   progress: Progress | None = None, **options: Any) -> pd.DataFrame:
    """Write the batch folder ``out`` from the corpus at ``source`` with adapter ``name``; return its labels.

    ``out`` must not exist; it appears whole (a hidden sibling is renamed into place), so it can be
    written straight into an inbox. What was skipped and why is logged, recorded in ``out/import.json``
    and in the returned frame's ``attrs["import"]``. Options set to None are ignored (CLI defaults).
    """
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; available: {', '.join(ADAPTERS)}")
    adapter = ADAPTERS[name]
    if adapter.needs_dataset_name and not dataset:
        raise ValueError(f"adapter {name} needs a dataset name (the store folder for these clips)")
    options = _checked(adapter, options)
    source, out, dataset = Path(source).resolve(), Path(out).resolve(), dataset or name
    check_target(source, out, dataset)
    scan = adapter.scan(source, **options)
    return write_batch(name, scan, source, out, dataset, {**options, "link": link}, link, progress)
