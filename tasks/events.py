"""Prefect events that affectflow emits: what automations and deployment triggers hang on.

Each event's resource is the dataset, ``affectflow.dataset.<name>``, so a trigger can match one dataset:

- ``affectflow.batch.accepted`` / ``affectflow.batch.quarantined``: payload ``dataset``, ``batch``, ``clips``, ``new_clips``,
  ``dataset_version``, ``reasons``;
- ``affectflow.batch.drifted``: an accepted batch unlike the data its champion learnt from (``tasks.drift``; a
  retraining or a notification can hang on it): payload ``dataset``, ``batch``, ``clips``, ``reference`` (``kind``,
  ``dataset_version``, ``clips``, ``note``), ``share_drifted``, ``threshold``, ``drifted_features``,
  ``prediction_drifted`` (None without a champion), ``report`` (the ``drift.md`` path);
- ``affectflow.model.promoted`` / ``affectflow.model.rejected``: payload ``dataset``, ``model``, ``version``, ``reason``.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

RESOURCE_PREFIX = "affectflow.dataset."


def dataset_resource(dataset: str | None) -> dict[str, str]:
    """A batch whose labels could not be read has no dataset: it is reported on ``affectflow.dataset.unknown``."""
    name = dataset or "unknown"
    return {"prefect.resource.id": f"{RESOURCE_PREFIX}{name}", "prefect.resource.name": name,
            "affectflow.dataset": name}


def emit(event: str, dataset: str | None, payload: dict[str, Any]) -> None:
    """``event`` on the dataset's resource; the payload also names the dataset (what triggers template from)."""
    resource = dataset_resource(dataset)
    emit_event(event=event, resource=resource, payload={"dataset": resource["affectflow.dataset"], **payload})
