"""Packaging a trained model for serving: the BentoML model store and Bentos of the serving API.

The stores are opened from the *current* ``BENTOML_HOME`` (else ``<AFFECTFLOW_HOME>/bentoml``) on every
call instead of through BentoML's process-wide store, which is fixed the first time BentoML touches it:
one process (a test session, a Prefect worker) can then package into more than one home.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras

from affectflow.backbone import bundle
from affectflow.config import get_paths
from affectflow.model import input_names
from affectflow.predict import MODEL_FILENAME, ModelCard

BENTO_MODEL_NAME = "affectflow-emotion"
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


def model_store():
    """The BentoML model store of the current home (created when missing)."""
    from bentoml._internal.models import ModelStore

    folder = bentoml_home() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(folder))


def bento_store():
    """The BentoML Bento store of the current home (created when missing)."""
    from bentoml._internal.bento import BentoStore

    folder = bentoml_home() / "bentos"
    folder.mkdir(parents=True, exist_ok=True)
    return BentoStore(str(folder))


def save_to_bentoml(model: keras.Model, card: ModelCard) -> str:
    """Save ``model`` as ``model.keras`` in a new BentoML model carrying the card as metadata; returns its tag.

    A model that takes frozen backbone embeddings gets the backbone file copied beside it: the Bento
    serves without the training machine's copy (``Predictor.from_dir`` finds it)."""
    import bentoml

    labels = {"task": card.task, "model_version": card.model_version,
              "dataset_version": card.dataset_version, "preprocess": card.preprocess.hash()}
    with bentoml.models.create(BENTO_MODEL_NAME, labels=labels, metadata=card.to_dict(),
                               _model_store=model_store()) as stored:
        model.save(stored.path_of(MODEL_FILENAME))
        if "backbone" in input_names(model):
            bundle(card.preprocess.backbone, stored.path)
    return str(stored.tag)


def build_bento(model_tag: str) -> str:
    """Build a Bento of the serving API with ``model_tag`` pinned to its exact version; returns the Bento tag.

    ``bentoml build`` runs in a child process so the service module is imported fresh with this tag and
    the Bento lands in the current home's store. A ``latest`` tag is resolved first, so the Bento keeps
    serving the same model after newer ones are saved.
    """
    if not BENTOFILE.is_file():
        raise FileNotFoundError(f"{BENTOFILE}: building a Bento needs the project's source checkout")
    exact_tag = str(model_store().get(model_tag).tag)
    cmd = [sys.executable, "-m", "bentoml", "build", str(PROJECT_ROOT), "--bentofile", str(BENTOFILE),
           "--arg", f"{MODEL_TAG_ARG}={exact_tag}", "--output", "tag"]
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home())}
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    tags = [line.strip()[len(_TAG_PREFIX):] for line in result.stdout.splitlines()
            if line.strip().startswith(_TAG_PREFIX)]
    if result.returncode != 0 or not tags:
        output = (result.stderr or result.stdout).strip().splitlines()[-20:]
        raise RuntimeError(f"bentoml build failed (exit {result.returncode}):\n" + "\n".join(output))
    return tags[-1]


def serve_command(bento_tag: str, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The command line serving a Bento over HTTP; run it with ``BENTOML_HOME`` pointing at the store."""
    return [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]
