"""Flow run names that say what ran: ``train-emodb-v-1a2b3c4d5e6f`` (kind, dataset, dataset version)."""

from __future__ import annotations

from collections.abc import Callable

from prefect.runtime import flow_run

from affectflow.config import get_paths
from affectflow.errors import UserError
from affectflow.ingest import dataset_version


def dataset_run_name(kind: str) -> Callable[[], str]:
    """A ``flow_run_name`` for flows with ``dataset`` and ``home`` parameters; an unknown dataset still gets a
    name (``...-no-data``): the flow itself then fails with the reason."""
    def name() -> str:
        parameters = flow_run.parameters
        dataset = parameters.get("dataset", "?")
        try:
            version = dataset_version(dataset, get_paths(parameters.get("home")))
        except UserError:
            version = "no-data"
        return f"{kind}-{dataset}-{version}"
    return name
