"""Collect finished GLUE runs into a paper table (markdown on stdout; LaTeX / CSV on request).

    uv run python src/scripts/glue/collect_results_glue.py logs/
    uv run python src/scripts/glue/collect_results_glue.py logs/gpart_* logs/lora_* \
        --tasks cola sst2 mrpc qnli rte stsb --latex table.tex --csv table.csv

Each cell: the task's primary metric (MCC for CoLA, Pearson for STS-B, accuracy otherwise) on
GLUE's validation split, ×100, mean ± sample std over seeds. Warnings go to stderr; any error
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gpart.configs.tasks import GLUE_TASKS
from gpart.results import ResultsError, collect_results, write_text_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collect_results_glue.py",
        description="Aggregate GLUE results.json files over seeds into a table.",
    )
    parser.add_argument(
        "paths", nargs="+", help="run directories, results.json files, or parents holding many"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=list(GLUE_TASKS),
        metavar="TASK",
        help=f"columns, in order (default: every task found). Choices: {' '.join(GLUE_TASKS)}",
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        table = collect_results(
            args.paths,
            tasks=args.tasks,
            task_order=list(GLUE_TASKS),
            task_labels={name: t.display_name for name, t in GLUE_TASKS.items()},
            average_label="GLUE Avg.",
        )
        for message in table.warnings:
            print(f"warning: {message}", file=sys.stderr)
        if args.latex:
            write_text_atomic(args.latex, table.to_latex(args.decimals))
        if args.csv:
            write_text_atomic(args.csv, table.to_csv())
    except (ResultsError, OSError) as err:
        print(f"collect_results_glue.py: error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(table.to_markdown(args.decimals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
