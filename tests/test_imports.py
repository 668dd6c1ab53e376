"""The import rules of docs/architecture.md, read from the source with ``ast``.

* No cycles among ``app.py``, ``recovery/``, ``admin/`` and ``jobs/`` (imports inside
  functions count too: a late import hides a cycle, it does not remove it).
* ``recovery`` never imports ``admin`` or ``jobs``.
* Nothing imports ``app`` except the entry points that build an app.
* Inside ``recovery``, a capability imports only its own package and the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recovery", "admin", "jobs")
ENTRY_POINTS = {"jobs.worker"}  # build an app: the RQ worker (gunicorn imports app itself)

# recovery's layers, lowest first (docs/architecture.md, "Packages").
LAYERS = (
    {"recovery.config", "recovery.db", "recovery.effects", "recovery.errors", "recovery.memory"},
    {"recovery.models", "recovery.redis_client", "recovery.links", "recovery.audit"},
    {"recovery.availability", "recovery.payments"},
    {"recovery.messaging"},
    {"recovery.offers"},
    {"recovery.booking"},
    {"recovery.sweep", "recovery.cli", "recovery.http", "recovery.demo"},
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    files = [ROOT / "app.py"]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return {module_name(p): p for p in files}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports (``from pkg import module`` resolves to the
    module); package ``__init__`` files are docstrings here, so they are not edges."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
                break  # `from pkg import module` is the module, not also the package
    return found


def graph() -> dict[str, set[str]]:
    modules = our_modules()
    known = set(modules)
    return {name: imports_of(path, known) - {name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> int | None:
    for rank, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return rank
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_recovery_never_imports_admin_or_jobs():
    wrong = [
        f"{mod} imports {dep}"
        for mod, deps in graph().items()
        if mod.startswith("recovery")
        for dep in deps
        if dep.split(".")[0] in ("admin", "jobs")
    ]
    assert wrong == []


def test_only_entry_points_import_app():
    importers = sorted(mod for mod, deps in graph().items() if "app" in deps)
    assert set(importers) <= ENTRY_POINTS, importers


@pytest.mark.parametrize("module", sorted(m for m in our_modules() if m.startswith("recovery.")))
def test_recovery_imports_only_its_package_and_lower_layers(module):
    """A capability package (``recovery.offers``, ...) imports lower layers and itself;
    modules at the root of ``recovery`` may also import their own layer (no cycles)."""
    rank = layer_of(module)
    assert rank is not None, f"{module} has no layer: add it to LAYERS and the architecture doc"
    package = ".".join(module.split(".")[:2])
    is_capability = (ROOT / Path(*package.split("."))).is_dir()
    wrong = [
        dep
        for dep in sorted(graph()[module])
        if dep.startswith("recovery.")
        and not (dep == package or dep.startswith(package + "."))
        and (layer_of(dep) > rank or (layer_of(dep) == rank and is_capability))
    ]
    assert wrong == [], f"{module} imports its own layer or one above: {wrong}"
