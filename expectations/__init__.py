"""Great Expectations suites kept as reviewable JSON files beside this module.

Each ``<name>.json`` is a GX 1.x ``ExpectationSuite`` in its ``to_json_dict`` form; a change to what
the project accepts is a diff of that file. The package is installed, so the suites are found with
``importlib.resources`` from the CLI, a Prefect worker or pytest alike.
"""

from __future__ import annotations

import json
from importlib import resources


def suite_dict(name: str) -> dict:
    """The suite ``<name>.json`` as a plain dict (``ExpectationSuite(**suite_dict(name))`` builds it)."""
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)
