"""The package's layers, read from the source: the core never imports the orchestration above it, and no
module imports itself back through others (local imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("affectflow", "cli", "flows", "tasks", "serving", "expectations")
# What each layer may import from the project (besides itself).
ALLOWED = {
    "affectflow": {"expectations"},
    "expectations": set(),
    "serving": {"affectflow"},
    "tasks": {"affectflow"},
    "flows": {"affectflow", "tasks"},
    "cli": {"affectflow", "flows"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports anywhere in its body (resolved to the longest known name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ is imported on the way to any of its modules: not a dependency of its own.
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in edges.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_walk_sees_the_whole_project():
    modules = project_modules()
    assert {"affectflow.training", "cli.main", "flows.train", "tasks.train", "serving.service"} <= set(modules)
    assert "affectflow.arrays" in graph()["affectflow.training"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    wrong = {f"{source} -> {target}" for source, targets in graph().items() if source.split(".")[0] == layer
             for target in targets if target.split(".")[0] not in ALLOWED[layer] | {layer}}
    assert not wrong, f"{layer} must not import these: {sorted(wrong)}"


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
