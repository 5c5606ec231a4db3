"""Packaging a trained model for serving: a BentoML model and a Bento per dataset, through public BentoML APIs.

BentoML fixes its stores the first time a process touches them, at the ``BENTOML_HOME`` of that moment. One
process here may package into several homes (a test session, a worker switching homes), so every store
operation runs in a child process given the current home's ``BENTOML_HOME``: ``bentoml`` commands, and
``python -m affectflow.packaging`` for saving a model (``bentoml.models.create``).

Names: model and Bento of a dataset are both ``affectflow-<dataset>`` (``names.model_name``), labelled with
the dataset, dataset version, model version, task and classes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from affectflow.backbone import bundle
from affectflow.config import get_paths
from affectflow.errors import UserError
from affectflow.model import input_names
from affectflow.names import dataset_of, model_name
from affectflow.predict import MODEL_FILENAME, ModelCard
from affectflow.speakers import save_population

SERVICE_NAME = "affectflow"
SERVICE_IMPORT = "serving.service:EmotionService"
# A Bento pins its model through this build argument; ``bentoml serve`` of source code reads the env var.
MODEL_TAG_ARG = "model_tag"
MODEL_TAG_ENV = "AFFECTFLOW_MODEL_TAG"
# The build context: the repository root, holding bentofile.yaml, affectflow/ and serving/.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = PROJECT_ROOT / "bentofile.yaml"
_TAG_PREFIX = "__tag__:"


def bentoml_home() -> Path:
    """``$BENTOML_HOME`` when set (``config.activate_home`` sets it), else the affectflow home's store."""
    return Path(os.environ.get("BENTOML_HOME") or get_paths().bentoml_home)


def _run(args: list[str], what: str) -> str:
    """A child process on the current home's BentoML store; its stdout, or an error with its last lines."""
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home()), "BENTOML_DO_NOT_TRACK": "true"}
    done = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-20:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n" + "\n".join(output))
    return done.stdout


def labels_of(card: ModelCard) -> dict[str, str]:
    """What ``bentoml list``/``get`` show of a model or Bento: whose, which version, what it predicts."""
    return {"dataset": card.dataset, "dataset_version": card.dataset_version, "model_version": card.model_version,
            "task": card.task, "classes": " ".join(card.classes), "preprocess": card.preprocess.hash()}


def save_to_bentoml(model: keras.Model, card: ModelCard) -> str:
    """Save ``model`` (``model.keras``) as a new version of the BentoML model ``affectflow-<dataset>``, the
    card and the model's input names as its metadata; returns the exact tag. A model that takes frozen
    backbone embeddings gets the backbone copied beside it: the Bento serves without the training machine's
    copy. Its audio population statistics go beside it too: the request workers calibrate speakers with them
    without loading the model."""
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / MODEL_FILENAME)
        save_population(model, Path(folder))
        if "backbone" in input_names(model):
            bundle(card.preprocess.backbone, Path(folder))
        out = _run(["-m", "affectflow.bentomodels", folder, model_name(card.dataset), json.dumps(labels_of(card)),
                    json.dumps({**card.to_dict(), "inputs": input_names(model)})],
                   "saving the model to BentoML")
    return out.strip().splitlines()[-1]


@dataclass(frozen=True)
class StoredModel:
    tag: str
    path: Path
    labels: dict[str, str]
    metadata: dict


def stored_model(tag: str) -> StoredModel:
    """A model of the store (``bentoml models get``), with the folder its files are in."""
    info = json.loads(_run(["-m", "bentoml", "models", "get", tag, "-o", "json"], f"reading model {tag}"))
    return StoredModel(f"{info['name']}:{info['version']}", bentoml_home() / "models" / info["name"] / info["version"],
                       info.get("labels", {}), info.get("metadata", {}))


def build_bento(model_tag: str) -> str:
    """Build the Bento ``affectflow-<dataset>`` of the serving API with ``model_tag`` (exact) pinned and the
    model's labels; returns the Bento tag. ``bentoml build`` imports the service module fresh with this tag."""
    if not BENTOFILE.is_file():
        raise FileNotFoundError(f"{BENTOFILE}: building a Bento needs the project's source checkout")
    model = stored_model(model_tag)
    labels = [arg for key, value in model.labels.items() for arg in ("--label", f"{key}={value}")]
    out = _run(["-m", "bentoml", "build", str(PROJECT_ROOT), "--bentofile", str(BENTOFILE),
                "--name", model.tag.split(":")[0], *labels, "--arg", f"{MODEL_TAG_ARG}={model.tag}",
                "--output", "tag"], "bentoml build")
    tags = [line.strip()[len(_TAG_PREFIX):] for line in out.splitlines() if line.strip().startswith(_TAG_PREFIX)]
    if not tags:
        raise RuntimeError(f"bentoml build printed no tag:\n{out[-2000:]}")
    return tags[-1]


def bentos() -> list[dict]:
    """Every Bento of the store, newest first (``bentoml list``): tag, size, creation time."""
    return sorted(json.loads(_run(["-m", "bentoml", "list", "-o", "json"], "bentoml list") or "[]"),
                  key=lambda bento: bento["creation_time"], reverse=True)


def served_datasets() -> dict[str, str]:
    """Dataset -> its newest Bento's tag (the one built when its champion was last promoted)."""
    newest: dict[str, str] = {}
    for bento in bentos():
        dataset = dataset_of(bento["tag"].split(":")[0])
        if dataset is not None:
            newest.setdefault(dataset, bento["tag"])
    return newest


# One child process: every Bento with its labels and pinned models (``bentoml list -o json`` has no labels).
_LIST_BENTOS = """
import json, bentoml
print(json.dumps([{"tag": str(b.tag), "creation_time": b.info.creation_time.isoformat(), "labels": dict(b.info.labels),
                   "models": [str(m.tag) for s in b.info.services for m in s.models]} for b in bentoml.list()]))
"""


@dataclass(frozen=True)
class ServedBento:
    """A dataset's newest Bento: what ``affectflow serve`` serves, and the model version it pins."""

    tag: str
    model_tag: str | None       # the BentoML model it was built with
    model_version: str | None   # that model's registry version, ``affectflow-<dataset>/<N>`` (its label)


def newest_bentos() -> dict[str, ServedBento]:
    """Dataset -> its newest Bento (the one ``served_datasets`` names) with the model version it pins."""
    found = json.loads(_run(["-c", _LIST_BENTOS], "listing Bentos").strip().splitlines()[-1] or "[]")
    newest: dict[str, ServedBento] = {}
    for bento in sorted(found, key=lambda b: b["creation_time"], reverse=True):
        dataset = dataset_of(bento["tag"].split(":")[0])
        if dataset is not None and dataset not in newest:
            newest[dataset] = ServedBento(bento["tag"], next(iter(bento["models"]), None),
                                          bento["labels"].get("model_version"))
    return newest


def choose_dataset(available: list[str], asked: str | None, what: str) -> str:
    """``asked``, else the only dataset there is; with several, an error naming them."""
    if asked is not None:
        if asked not in available:
            raise UserError(f"no {what} for dataset {asked!r} (available: {', '.join(available) or 'none yet'})")
        return asked
    if len(available) == 1:
        return available[0]
    if not available:
        raise UserError(f"no {what} yet: train a dataset first (affectflow train --dataset NAME)")
    raise UserError(f"several datasets have a {what}: choose one with --dataset ({', '.join(sorted(available))})")


def serve_command(bento_tag: str, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The command line serving a Bento over HTTP; run it with ``BENTOML_HOME`` pointing at the store."""
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]
