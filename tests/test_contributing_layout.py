"""CONTRIBUTING.md's layout tree describes the package as it is.

Every module of `src/gpart` is named in the tree under its package, and every file the
tree or its tests/ table names exists, so a new module or a rename shows here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "CONTRIBUTING.md").read_text()
# The package's part of the tree: its indented lines, up to the next top-level folder.
TREE = re.search(r"```\nsrc/gpart/\n(.*?)^\S", TEXT, re.S | re.M).group(1)
HELPERS = TEXT[TEXT.index("### tests/") :].split("\n## ", 1)[0]
# One module per adapter / per domain's presets: the tree names the folder, not each file.
FOLDERS_BY_RULE = ("configs/adapters", "configs/presets")


def _package_sections() -> dict[str, str]:
    """Each top-level package's part of the tree: from its line to the next one's."""
    heads = list(re.finditer(r"^  (\w+)(/|\.py)", TREE, re.M))
    ends = [m.start() for m in heads[1:]] + [len(TREE)]
    return {m.group(1): TREE[m.start() : end] for m, end in zip(heads, ends, strict=True)}


def test_every_module_is_named_under_its_package():
    sections = _package_sections()
    missing = []
    for path in sorted((ROOT / "src" / "gpart").rglob("*.py")):
        rel = path.relative_to(ROOT / "src" / "gpart")
        if path.name in ("__init__.py", "__main__.py") or str(rel.parent) in FOLDERS_BY_RULE:
            continue
        if len(rel.parts) == 1:
            named = rel.stem in sections
        else:
            named = re.search(rf"\b{re.escape(path.name)}\b", sections.get(rel.parts[0], ""))
        if not named:
            missing.append(str(rel))
    assert not missing, f"CONTRIBUTING.md's layout tree does not name: {missing}"


def test_every_file_the_tree_names_exists():
    sections = _package_sections()
    absent = []
    for package, text in sections.items():
        src = ROOT / "src" / "gpart"
        for name in re.findall(r"([\w/]+\.py)\b", text):
            if "/" in name:  # runners/analysis.py from gpart, presets/base.py from its package
                found = (src / name).is_file() or (src / package / name).is_file()
            else:  # a module of this package (a top-level module names itself)
                found = (src / name).is_file() or bool(list((src / package).rglob(name)))
            if not found:
                absent.append(f"{package}: {name}")
    for name in re.findall(r"`([\w*]+\.py)`", HELPERS):
        if not list((ROOT / "tests").glob(name)):
            absent.append(f"tests/{name}")
    assert not absent, f"CONTRIBUTING.md names files that do not exist: {absent}"
