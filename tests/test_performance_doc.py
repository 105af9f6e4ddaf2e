"""docs/performance.md and benchmarks/README.md against the runs kept in benchmarks/.

Every table of a benchmark run on the page is what `gpart.bench.report.markdown` renders
from a JSON that is there, every JSON backs a table and has a row in the index with the
commit it ran at, and every run a text names exists. So a number on the page can always
be traced to the run that produced it, and a run no table uses does not linger.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from gpart.bench.cli import parse
from gpart.bench.report import markdown

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PAGE = (ROOT / "docs" / "performance.md").read_text()
INDEX = (BENCH / "README.md").read_text()
RUNS = sorted(BENCH.glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _table(result: dict) -> str:
    """The caption line and the table, without the footer that explains the columns
    (the page explains them once, in "Reading the tables")."""
    caption, table, *_footer = markdown(result).split("\n\n")
    return f"{caption}\n\n{table}"


def test_benchmarks_holds_runs():
    assert len(RUNS) >= 2, "benchmarks/ lost its runs"


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_every_run_has_an_index_row_with_its_commit(path):
    rows = [line for line in INDEX.splitlines() if line.startswith(f"| `{path.name}` |")]
    assert len(rows) == 1, f"benchmarks/README.md needs one row for {path.name}"
    result = _load(path)
    sha = result.get("environment", {}).get("git_sha")
    if sha is None:  # a runner's results.json pair records its commit in prose
        sha = re.search(r"commit ([0-9a-f]{7,40})", result["what"]).group(1)
    assert f"| {sha}" in rows[0], f"the index row of {path.name} must name git sha {sha}"


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_every_run_backs_a_table_on_the_page(path):
    assert f"`benchmarks/{path.name}`" in PAGE, f"docs/performance.md does not cite {path.name}"
    result = _load(path)
    if "rows" in result:  # a benchmark run: its table is the benchmark's own rendering
        assert _table(result) in PAGE, (
            f"docs/performance.md must show {path.name} as gpart.bench.report.markdown "
            "renders it (caption line and table)"
        )


def test_every_run_a_text_names_exists():
    texts = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", BENCH / "README.md"]
    texts += sorted((ROOT / "docs").glob("**/*.md")) + sorted((ROOT / "src").glob("**/*.py"))
    named = {
        (text.relative_to(ROOT), name)
        for text in texts
        for name in re.findall(r"benchmarks/([\w.+-]+\.json)", text.read_text())
    }
    indexed = re.findall(r"^\| `([\w.+-]+\.json)` \|", INDEX, flags=re.M)
    named |= {(Path("benchmarks/README.md"), name) for name in indexed}
    missing = sorted(f"{where}: {name}" for where, name in named if not (BENCH / name).exists())
    assert not missing, f"texts name runs that benchmarks/ does not hold: {missing}"


def _documented_bench_commands() -> list[list[str]]:
    """The `python -m gpart.bench` commands of the page's shell blocks, as argv lists."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", PAGE, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:5] == ["uv", "run", "python", "-m", "gpart.bench"]:
                commands.append(argv[5:])
    return commands


def _same_run(parsed: dict, recorded: dict) -> bool:
    """Whether a parsed command asks for what a run recorded. `task` is resolved from the
    model at run time; fields a run predates (`quantize`, `memory_metric`, some `hp`) are
    compared where it recorded them, but for the optimizer, which was torch's default."""
    for key, value in recorded.items():
        if key == "hp":
            # Runs written before --optimizer stepped with torch's default AdamW: per
            # tensor on a CPU, foreach on a GPU; their commands must say which.
            default = "foreach" if recorded.get("device") == "cuda" else "per_tensor"
            value = {"optimizer": default, **value}
            if any(parsed["hp"][k] != v for k, v in value.items()):
                return False
        elif key != "task" and parsed[key] != value:
            return False
    return True


def test_every_documented_command_parses_and_every_run_has_one():
    commands = _documented_bench_commands()
    assert commands, "docs/performance.md shows no gpart.bench command"
    parsed = [dataclasses.asdict(parse(argv)[0]) for argv in commands]
    for path in RUNS:
        recorded = _load(path).get("args")
        if recorded is None:  # a runner's results, not a benchmark run
            continue
        assert any(_same_run(p, recorded) for p in parsed), (
            f"docs/performance.md shows no command that reproduces {path.name}'s args"
        )
