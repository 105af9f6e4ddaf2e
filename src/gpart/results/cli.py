"""The collect scripts' command line, shared by every domain (GLUE, vision, math).

    collect_results_<domain>.py PATH... [--tasks T...] [--model_size S] [--latex F] [--csv F]

Markdown to stdout, warnings to stderr, any error one line and exit status 2. With
``by_model_size`` (vision: one table per backbone size) each size found gets its own table,
headed by its name, and the ``--latex`` / ``--csv`` files get the size in their name when
there are several.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gpart.results.collect import (
    ResultsError,
    RunResult,
    find_results_files,
    load_run_result,
    summarize,
)
from gpart.results.io import write_text_atomic


def build_collect_parser(
    prog: str, description: str, tasks: Sequence[str]
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "paths", nargs="+", help="run directories, results.json files, or parents holding many"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=list(tasks),
        metavar="TASK",
        help=f"columns, in order (default: every task found). Choices: {' '.join(tasks)}",
    )
    parser.add_argument("--model_size", help="only runs of this size preset (default: all)")
    parser.add_argument(
        "--by",
        choices=("run", "d"),
        default="run",
        help="rows: one per run (default), or d: per method and trainable-parameter count, "
        "sorted (a d sweep)",
    )
    parser.add_argument("--latex", metavar="FILE", help="also write a LaTeX (booktabs) table")
    parser.add_argument("--csv", metavar="FILE", help="also write a CSV table")
    parser.add_argument(
        "--decimals",
        type=int,
        default=1,
        choices=range(0, 5),
        metavar="N",
        help="decimals in markdown/LaTeX (default 1)",
    )
    return parser


def _sized(path: str, size: str, several: bool) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}_{size}{p.suffix}") if several else p


def collect_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    task_labels: Mapping[str, str],
    average_label: str | None,
    by_model_size: bool = False,
    expand: Callable[..., list[RunResult]] | None = None,
    task_decimals: Mapping[str, int] | None = None,
    graders: Sequence[str] | None = None,
    standalone: Callable[..., list[RunResult]] | None = None,
) -> int:
    """Parse, collect, print; 0 on success, 2 on any error (one line on stderr).

    `expand` turns each run read into the table entries it contributes (math: its
    evaluations, `gpart.results.collect.load_eval_results`, plus its held-out loss);
    default: the run itself. `average_label` None leaves the average column out;
    `task_decimals` sets some columns' decimals (``--decimals`` sets the rest).
    `graders` adds ``--grader`` (its first the default), handed to `expand` and
    `standalone` as ``grader=``. `standalone(paths, grader=...)` gives the entries that
    belong to no run (math: base models evaluated alone, rows of their own); they take
    the model size of a run on the same base model.
    """
    parser = build_collect_parser(prog, description, list(task_labels))
    if graders:
        parser.add_argument(
            "--grader",
            choices=list(graders),
            default=graders[0],
            help=f"whose verdicts fill the cells (default {graders[0]})",
        )
    args = parser.parse_args(argv)
    options = {"grader": args.grader} if graders else {}
    try:
        extra = standalone(args.paths, **options) if standalone else []
        try:
            files = find_results_files(args.paths)
        except ResultsError:
            if not extra:
                raise
            files = []  # base models alone
        runs = [load_run_result(p) for p in files]
        results = [r for run in runs for r in (expand(run, **options) if expand else [run])]
        sizes = {run.base_model: run.model_size for run in runs if run.base_model}
        results += [dataclasses.replace(r, model_size=sizes.get(r.base_model)) for r in extra]
        if args.model_size is not None:
            results = [r for r in results if r.model_size == args.model_size]
            if not results:
                raise ResultsError(f"no runs of model size {args.model_size!r}")
        groups: dict[str | None, list] = {}
        for r in results:
            groups.setdefault(r.model_size if by_model_size else None, []).append(r)
        several = len(groups) > 1
        tables = []
        for size, group in groups.items():
            table = summarize(
                group,
                tasks=args.tasks,
                task_order=list(task_labels),
                task_labels=dict(task_labels),
                average_label=average_label,
                task_decimals=task_decimals,
            )
            if args.by == "d":
                table = table.by_d()
            for message in table.warnings:
                print(f"warning: {message}", file=sys.stderr)
            label = size or "unknown size"
            if args.latex:
                write_text_atomic(_sized(args.latex, label, several), table.to_latex(args.decimals))
            if args.csv:
                write_text_atomic(_sized(args.csv, label, several), table.to_csv())
            tables.append((size, table))
    except (ResultsError, OSError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    for i, (size, table) in enumerate(tables):
        if by_model_size:
            sys.stdout.write(("\n" if i else "") + f"### {size or 'unknown size'}\n\n")
        sys.stdout.write(table.to_markdown(args.decimals))
    return 0
