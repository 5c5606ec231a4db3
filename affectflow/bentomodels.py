"""Saving a model into BentoML's store with its public API, in a process of its own (``packaging`` says why):

    BENTOML_HOME=... python -m affectflow.bentomodels FOLDER NAME LABELS_JSON METADATA_JSON

copies FOLDER's files into a new version of model NAME and prints its tag. Imports BentoML only (no
TensorFlow), so it starts in about a second.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def create_model(folder: Path, name: str, labels: dict[str, str], metadata: dict) -> str:
    import bentoml

    with bentoml.models.create(name, labels=labels, metadata=metadata) as stored:
        for item in folder.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, stored.path_of(item.name))
    return str(stored.tag)


if __name__ == "__main__":
    print(create_model(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])))
