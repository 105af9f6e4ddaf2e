"""Imports inside `gpart.configs` run one way: no module imports one that imports it back.

Checked on the source (every import statement, also those inside functions), so a cycle
hidden by a function-level import fails here too. The package ``__init__`` only collects
the public names and is left out; so is the registry's discovery of `configs/adapters/`
modules, which goes through `importlib` (a plug-in mechanism, not an import statement).
"""

from __future__ import annotations

import ast
from pathlib import Path

import gpart.configs

ROOT = Path(gpart.configs.__file__).parent
PACKAGE = "gpart.configs"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[2:]) if name != PACKAGE else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """The `gpart.configs` modules that `path` imports (submodules named in `from` count)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if _is_module(sub) else node.module)
    return out - {PACKAGE}


def _graph() -> dict[str, set[str]]:
    files = sorted(ROOT.rglob("*.py"))
    graph = {_module_name(p): _imports(p) for p in files}
    del graph[PACKAGE]
    return graph


def test_configs_import_graph_has_no_cycle():
    graph = _graph()
    assert f"{PACKAGE}.schema" in graph and f"{PACKAGE}.presets.glue" in graph
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_schema_sits_below_the_registry():
    graph = _graph()
    assert graph[f"{PACKAGE}.schema"] <= {f"{PACKAGE}.errors"}
    assert f"{PACKAGE}.schema" in graph[f"{PACKAGE}.registry"]
