"""One name per dataset for everything that holds its model: the MLflow registered model, the BentoML
model and the Bento are all ``affectflow-<dataset>``, so ``bentoml list`` and the MLflow UI say whose it is."""

from __future__ import annotations

PREFIX = "affectflow-"


def model_name(dataset: str) -> str:
    return f"{PREFIX}{dataset}"


def dataset_of(name: str) -> str | None:
    """``"affectflow-emodb"`` -> ``"emodb"``; a name affectflow did not give -> None."""
    return name[len(PREFIX):] if name.startswith(PREFIX) and len(name) > len(PREFIX) else None
