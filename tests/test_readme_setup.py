"""The README's set-up lines are what CI runs on a fresh machine (`.ci/run`).

A new user follows the README on a bare Python machine; CI follows `.ci/run`. If the two
drift, the README stops being true without any test noticing -- unless this one fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"--quiet", "-q"}  # CI may be quieter than a user; nothing else may differ


def _commands(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("set ", "cd ", "if ", "fi", "then", "export ")):
            continue
        out.append(" ".join(t for t in shlex.split(line) if t not in QUIET))
    return out


def _bash_blocks(section: str) -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [b.splitlines() for b in re.findall(r"```bash\n(.*?)```", body, re.S)]


def _ci() -> list[str]:
    return _commands((ROOT / ".ci/run").read_text().splitlines())


def test_readme_install_is_what_ci_does():
    ci = _ci()
    (install,) = _bash_blocks("Install")
    readme = _commands(install)
    # Getting uv where it is missing, then the locked environment: in CI's words and order.
    assert readme == ["python3 -m pip install uv", "uv sync --locked"]
    assert ci[: len(readme)] == readme, (ci, readme)


def test_readme_test_command_is_what_ci_runs():
    blocks = [_commands(b) for b in _bash_blocks("On a fresh machine")]
    assert ["uv run pytest"] in blocks
    assert _ci()[-1] == "uv run pytest"


def test_the_parser_sees_a_drift():
    # The check above can fail: a README that forgot how to get uv is told apart.
    assert _commands(["uv sync  # no uv here"]) != _commands(["python3 -m pip install uv"])
    assert _commands(["python3 -m pip install --quiet uv"]) == ["python3 -m pip install uv"]
