"""No import cycles inside `gpart`: the package's modules form layers.

The graph is read statically (`ast`) from every module under ``src/gpart``, imports inside
functions included: a function-level import avoids an import-time failure but not the
dependency, so the layers must hold for those too. Imports under ``if TYPE_CHECKING:``
are skipped (they never run).

What an edge ``a -> b`` means: running module `a` (or one of its functions) needs module `b`
executed. Package ``__init__`` files count as modules of their own (``gpart.configs`` is
``gpart/configs/__init__.py``):

* ``import x.y.z`` and ``from x.y.z import name`` (`name` not a submodule): ``a -> x.y.z``,
  also when ``x.y.z`` is a package containing `a`: `a` then reads names that package's
  ``__init__`` must already have defined (e.g. ``from gpart.configs.presets import
  DomainPresets`` in ``presets/glue.py``, while ``presets/__init__`` imports ``glue``: the
  classic partial-initialisation cycle);
* ``from x.y import z`` where ``x.y.z`` is a module: ``a -> x.y.z``, the module whose names
  `a` uses, *and* ``a -> x.y``, also when ``x.y`` contains `a`: the statement takes `z` from
  the package object's namespace, which ``x/y/__init__.py`` fills in (and may rebind), so
  `a` sits above that ``__init__`` (e.g. ``from gpart.tuner import fused`` in
  ``tuner/partition.py``, while ``tuner/__init__`` imports ``model`` -> ``partition``). To
  use a sibling without its package, name the module itself: ``import x.y.z as z`` or
  ``from x.y.z import name``;
* for ``import x.y.z`` and ``from x.y.z import name``, the packages Python executes on the
  way (``x`` and ``x.y``): ``a -> x.y`` etc. as well, since importing ``gpart.configs.errors`` runs all of
  ``gpart/configs/__init__.py`` and whatever it imports -- *except* the packages that
  contain `a` itself: Python has always started those before `a` runs, so they are no
  dependency of `a` (otherwise every package whose ``__init__`` re-exports a submodule
  would be in a cycle with it).

The test fails with one readable chain ``a -> b -> a`` per cycle (every import edge inside
a cycle is on at least one listed chain), and with each edge's file and line. An import
of a `gpart` module that does not exist fails it too.
"""

from __future__ import annotations

import ast
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int
    via: str | None = None  # the module named in the import, when `target` is its package


# ---------------------------------------------------------------------------- the graph
def find_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root / package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom, at any depth, except in the body of ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_edges(modules: dict[str, Path], root_package: str) -> tuple[list[Edge], list[str]]:
    """All edges between `modules` (see the module docstring), and the imports of
    ``root_package`` modules that do not exist."""
    edges: list[Edge] = []
    missing: list[str] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        own = {module, *_parents(module)} if is_package else set(_parents(module))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _import_nodes(tree):
            loaded: list[tuple[str, bool]] = []  # (module, explicitly named)
            if isinstance(node, ast.Import):
                loaded = [(alias.name, True) for alias in node.names]
            else:
                if node.level:
                    package = module if is_package else module.rpartition(".")[0]
                    base_parts = package.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                names = [alias.name for alias in node.names]
                submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
                # the package itself too, submodules or not: the statement reads its
                # attributes (see the module docstring)
                loaded = [(sub, True) for sub in submodules] + [(base, True)]
            for target, explicit in loaded:
                if target != root_package and not target.startswith(root_package + "."):
                    continue
                if target not in modules:
                    missing.append(f"{path}:{node.lineno}: {target}")
                    continue
                deps = [(p, target) for p in _parents(target) if p not in own]
                if explicit or target not in own:
                    deps.append((target, None))
                for dep, via in deps:
                    if dep != module:
                        edges.append(Edge(module, dep, path, node.lineno, via))
    return edges, missing


# ---------------------------------------------------------------------------- the cycles
def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); each component sorted, components in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    nodes = sorted(set(graph) | {t for ts in graph.values() for t in ts})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str, within: set[str]):
    previous = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])
            return path[::-1]
        for child in sorted(graph.get(node, ())):
            if child in within and child not in previous:
                previous[child] = node
                queue.append(child)
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of the graph as chains ``[a, b, ..., a]``: in each strongly connected
    component of more than one module, for every edge ``u -> v`` the shortest cycle through
    it (so every edge of a cycle is shown), without repeats, each rotated to start at its
    smallest name."""
    cycles: list[list[str]] = []
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        members = set(component)
        seen: set[tuple[str, ...]] = set()
        for u in component:
            for v in sorted(graph.get(u, set()) & members):
                if u == v:
                    continue
                back = _shortest_path(graph, v, u, members)
                ring = [u, *back[:-1]]
                i = ring.index(min(ring))
                ring = tuple(ring[i:] + ring[:i])
                if ring not in seen:
                    seen.add(ring)
                    cycles.append([*ring, ring[0]])
    return sorted(cycles, key=lambda c: (len(c), c))


def to_graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    return graph


def describe(cycles: list[list[str]], edges: list[Edge], root: Path) -> str:
    where: dict[tuple[str, str], set[tuple[Path, int, str]]] = {}
    for e in edges:
        via = f" (imports {e.via})" if e.via else ""
        where.setdefault((e.source, e.target), set()).add((e.path, e.line, via))
    lines = []
    for cycle in cycles:
        lines.append(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:], strict=False):
            at = [
                f"{path.relative_to(root)}:{line}{via}" for path, line, via in sorted(where[a, b])
            ]
            lines.append(f"    {a} -> {b}: {', '.join(at)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the tests
def test_gpart_has_no_import_cycles():
    modules = find_modules(SRC, "gpart")
    assert "gpart.tuner.config" in modules and "gpart" in modules
    edges, missing = import_edges(modules, "gpart")
    assert not missing, "imports of gpart modules that do not exist:\n" + "\n".join(missing)
    cycles = find_cycles(to_graph(edges))
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s) in src/gpart (a -> b: a imports b, at module level "
            "or inside a function):\n" + describe(cycles, edges, SRC),
            pytrace=False,
        )


def test_cycles_of_a_synthetic_graph():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"a"}}) == []  # a self-import is no cycle
    graph = {"b": {"c"}, "c": {"a", "d"}, "a": {"b"}, "d": {"e"}, "e": {"d"}, "x": {"a"}}
    assert find_cycles(graph) == [["d", "e", "d"], ["a", "b", "c", "a"]]
    # two cycles through one module: each is listed, every edge is on one of them
    graph = {"a": {"b", "c"}, "b": {"a"}, "c": {"a"}}
    assert find_cycles(graph) == [["a", "b", "a"], ["a", "c", "a"]]
    assert strongly_connected_components(graph) == [["a", "b", "c"]]


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_edges_and_cycles_of_a_package_tree(tmp_path):
    _write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.sub import api\n",
            "pkg/base.py": "X = 1\n",
            # a function-level import counts; a TYPE_CHECKING one does not
            "pkg/sub/__init__.py": """
                from typing import TYPE_CHECKING

                from .api import f
                if TYPE_CHECKING:
                    from pkg.user import User
                def g():
                    from pkg.user import helper
            """,
            # a sibling named by its own dotted path: no edge to the containing package
            "pkg/sub/api.py": "import pkg.sub.impl as impl\nfrom ..base import X\nimport os\n",
            "pkg/sub/impl.py": "import pkg.base\n",
            # importing pkg.sub.impl also runs pkg/sub/__init__ (not an ancestor of user)
            "pkg/user.py": "from pkg.sub.impl import thing\ndef helper(): ...\n",
            # a package __init__ attribute read from inside it: a real cycle
            "pkg/presets/__init__.py": "def load():\n    from pkg.presets import glue\n",
            "pkg/presets/glue.py": "from pkg.presets import load\n",
            # `from <package> import <submodule>` inside the package reads the package's
            # namespace: a cycle with an __init__ that imports the reader
            "pkg/tools/__init__.py": "from pkg.tools.model import Model\n",
            "pkg/tools/model.py": "from pkg.tools import util\nfrom . import util as u\n",
            "pkg/tools/util.py": "",
        },
    )
    modules = find_modules(tmp_path, "pkg")
    assert set(modules) == {
        "pkg",
        "pkg.base",
        "pkg.sub",
        "pkg.sub.api",
        "pkg.sub.impl",
        "pkg.user",
        "pkg.presets",
        "pkg.presets.glue",
        "pkg.tools",
        "pkg.tools.model",
        "pkg.tools.util",
    }
    edges, missing = import_edges(modules, "pkg")
    assert missing == []
    assert to_graph(edges) == {
        "pkg": {"pkg.sub", "pkg.sub.api"},
        "pkg.sub": {"pkg.sub.api", "pkg.user"},
        "pkg.sub.api": {"pkg.sub.impl", "pkg.base"},
        "pkg.sub.impl": {"pkg.base"},
        "pkg.user": {"pkg.sub", "pkg.sub.impl"},
        "pkg.presets": {"pkg.presets.glue"},
        "pkg.presets.glue": {"pkg.presets"},
        "pkg.tools": {"pkg.tools.model"},
        "pkg.tools.model": {"pkg.tools", "pkg.tools.util"},
    }
    cycles = find_cycles(to_graph(edges))
    assert cycles == [
        ["pkg.presets", "pkg.presets.glue", "pkg.presets"],
        ["pkg.sub", "pkg.user", "pkg.sub"],
        ["pkg.tools", "pkg.tools.model", "pkg.tools"],
    ]
    text = describe(cycles, edges, tmp_path)
    assert "pkg.sub -> pkg.user -> pkg.sub\n" in text
    assert "    pkg.sub -> pkg.user: pkg/sub/__init__.py:8" in text.splitlines()
    assert "    pkg.user -> pkg.sub: pkg/user.py:1 (imports pkg.sub.impl)" in text.splitlines()
    assert "    pkg.tools.model -> pkg.tools: pkg/tools/model.py:1, pkg/tools/model.py:2" in (
        text.splitlines()
    )

    # an import of a module that does not exist is reported
    (tmp_path / "pkg" / "base.py").write_text("from pkg.gone import x\n")
    _, missing = import_edges(find_modules(tmp_path, "pkg"), "pkg")
    assert missing == [f"{tmp_path / 'pkg' / 'base.py'}:1: pkg.gone"]
