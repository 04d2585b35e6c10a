"""The package layout holds: stages import only downward, no cycles, no hidden function-level imports.

The order is the README's "Architecture" drawing, top (the CLI) to bottom (what every stage uses).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

LAYERS = ["cli", "watch", "deploy", "engine", "cache", "actions", "validate", "bases", "attest", "project", "registry", "debian",
          "docker", "oci", "layers", "store", "common"]
ROOT = REPO / "builder"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported builder module, line, at function level) for each import of the project's own code."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("builder"):
                found.append((child.module, child.lineno, nested))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, nested) for a in child.names if a.name.startswith("builder"))
            visit(child, inner)

    visit(tree, False)
    return found


def test_stages_import_only_the_stages_below_them():
    upward = []
    for name, path in modules().items():
        own = stage(name)
        if own is None:
            continue
        for target, line, _ in imports(path):
            other = stage(target)
            if other is not None and LAYERS.index(other) < LAYERS.index(own):
                upward.append(f"{path.relative_to(REPO)}:{line}: {own} imports {target} ({other} is above it)")
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_modules():
    known = modules()
    graph = {name: sorted({t for t, _, _ in imports(path) if t in known and t != name})
             for name, path in known.items()}
    cycles, state = [], {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [node, nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                walk(nxt, trail + [node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            walk(name, [])
    assert not cycles, "\n".join(cycles)


def test_function_level_imports_say_why():
    """Only lazy loading of heavy parts (start-up time), each with a comment on or just above the line."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    here = lines[inner.lineno - 1]
                    above = [lines[i].strip() for i in range(max(0, inner.lineno - 4), inner.lineno - 1)]
                    if "#" not in here and not any(text.startswith("#") for text in above):
                        silent.append(f"{path.relative_to(REPO)}:{inner.lineno}: {here.strip()}")
    assert not silent, "\n".join(sorted(set(silent)))


def test_every_package_ships_in_the_wheel():
    """pyproject lists packages by name: a new package left out is missing from every installed airbuild."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {".".join(path.parent.relative_to(REPO).parts) for path in ROOT.rglob("__init__.py")}
    assert packages <= listed, f"not in pyproject.toml's packages: {sorted(packages - listed)}"
