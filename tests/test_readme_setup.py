"""The README's set-up lines are what CI runs, and the documented commands run as written.

A new user follows the README on a bare Python machine; CI follows `.ci/run`. If the two
drift, the README stops being true without any test noticing -- unless this one fails.
The same goes for the commands of the README and the docs site: the cheap, offline ones
(`--help`, `--print_config`, `--compute_params_only` on a tiny local config) are run here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

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


# ----------------------------------------------------------------- documented commands
# Every shell block of the README and the docs site is read; the blocks whose commands are
# all cheap and offline (`--help`, `--print_config`, `--compute_params_only`, with inline
# `python -c` set-up such as writing a tiny local config) are run as written, in a fresh
# working directory, so a renamed flag or key in the docs fails here.
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CHEAP = {"--help", "--print_config", "--compute_params_only"}


def _shell_commands(text: str) -> list[list[list[str]]]:
    """The commands of each ```bash block: continuation lines joined, comments dropped."""
    blocks = []
    for body in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = body.replace("\\\n", " ").splitlines()
        blocks.append([argv for argv in (shlex.split(ln, comments=True) for ln in lines) if argv])
    return blocks


def _python_argv(argv: list[str]) -> list[str] | None:
    """``[python, ...]`` of ``uv run python ...`` / ``python ...``; None for anything else."""
    argv = argv[2:] if argv[:2] == ["uv", "run"] else argv
    return argv if argv[:1] in (["python"], ["python3"]) else None


def _is_cheap(argv: list[str]) -> bool:
    return _python_argv(argv) is not None and bool(CHEAP & set(argv))


def _is_setup(argv: list[str]) -> bool:
    py = _python_argv(argv)
    return py is not None and py[1:2] == ["-c"]


def _cheap_blocks() -> list[tuple[str, list[list[str]]]]:
    out = []
    for path in DOC_FILES:
        for block in _shell_commands(path.read_text()):
            if any(_is_cheap(c) for c in block) and all(
                _is_cheap(c) or _is_setup(c) for c in block
            ):
                out.append((str(path.relative_to(ROOT)), block))
    return out


def _run_in_process(argv: list[str], monkeypatch) -> None:
    """Run one ``python`` command here, the way the shell would; fail on a non-zero exit.

    In-process (runpy) so torch and transformers are imported once for every command.
    Paths that name a file of the repository resolve against its root; others (what the
    commands write) land in the working directory.
    """
    import runpy
    import sys

    py = _python_argv(argv)
    args = [str(ROOT / a) if (ROOT / a).exists() and "/" in a else a for a in py[1:]]
    try:
        if args[0] == "-c":
            monkeypatch.setattr(sys, "argv", ["-c", *args[2:]])
            exec(compile(args[1], "<docs>", "exec"), {"__name__": "__main__"})
        elif args[0] == "-m":
            monkeypatch.setattr(sys, "argv", [args[1], *args[2:]])
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            monkeypatch.setattr(sys, "argv", args)
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"{shlex.join(argv)} exited with {exit_.code}"


def test_the_documented_cheap_commands_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = _cheap_blocks()
    commands = [c for _, block in blocks for c in block if _is_cheap(c)]
    # Each runner's inspection commands are documented (and so run here).
    for flag in CHEAP:
        assert any(flag in c for c in commands), flag
    for script in ("finetune_roberta_glue.py", "finetune_ViT.py", "finetune_metamath.py",
                   "eval_math.py"):  # fmt: skip
        assert any(any(a.endswith(script) for a in c) for c in commands), script
    for where, block in blocks:
        work = tmp_path / f"block{len(list(tmp_path.iterdir()))}"
        work.mkdir()
        monkeypatch.chdir(work)
        for argv in block:
            _run_in_process(argv, monkeypatch)
            out = capsys.readouterr().out
            if _is_cheap(argv):
                assert out.strip(), f"{where}: {shlex.join(argv)} printed nothing"


def test_a_failing_documented_command_fails(monkeypatch, tmp_path):
    # The runner above can fail: a command that exits non-zero is reported, not swallowed.
    monkeypatch.chdir(tmp_path)
    (block,) = _shell_commands('```bash\nuv run python -c "raise SystemExit(2)"  # no\n```')
    assert _is_setup(block[0]) and not _is_cheap(block[0])
    with pytest.raises(AssertionError, match="exited with 2"):
        _run_in_process(block[0], monkeypatch)


def test_no_document_cites_an_issue_number():
    # "(issue 13)" means nothing to a reader of the docs; say what the section is about.
    cited = re.compile(r"\b(issue|ticket)s?\s*#?\d+", re.I)
    for path in [*DOC_FILES, ROOT / "CONTRIBUTING.md"]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not cited.search(line), f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
    assert cited.search("### Ablation variants (issue 13)")  # the pattern sees the old headings
