"""The Bento installs what the service imports: every third-party package reachable from serving/service.py
(module-level and function-level imports, through the core modules it uses) is in bentofile.yaml's package
list or installed by one of them."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
OURS = ("affectflow", "serving")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(entry: str) -> set[str]:
    """Top-level names of the non-stdlib, non-project modules reachable from module ``entry``."""
    seen, todo, found = set(), [entry], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in OURS:
                todo.append(imported)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_by(packages: list[str]) -> set[str]:
    """The listed distributions and, recursively, what they require (what pip would install with them)."""
    todo, closure = [_canonical(Requirement(p).name) for p in packages], set()
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_canonical(Requirement(r).name) for r in requires if "extra ==" not in r)
    return closure


def _providers(module: str) -> set[str]:
    """The distributions that install ``module``: from their top_level.txt, else from their file lists
    (dlib-bin names only its compiled helper in top_level.txt)."""
    found = metadata.packages_distributions().get(module)
    if not found:
        found = [d.metadata["Name"] for d in metadata.distributions()
                 if any(str(f).startswith(f"{module}/") for f in d.files or [])]
    return {_canonical(d) for d in found or [module]}


def test_bentofile_lists_every_package_the_service_imports():
    listed = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    needed = {module: _providers(module) for module in third_party_imports("serving.service")}
    assert {"bentoml", "tensorflow", "decord", "librosa", "cv2", "dlib", "pandas"} <= set(needed)
    installed = _installed_by([*listed, "bentoml"])  # the Bento runs on bentoml and what it requires
    missing = {module: dists for module, dists in needed.items() if not dists & installed}
    assert not missing, f"bentofile.yaml lacks packages the service imports: {missing}"
