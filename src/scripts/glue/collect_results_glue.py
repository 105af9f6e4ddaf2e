"""Collect finished GLUE runs into a paper table (markdown on stdout; LaTeX / CSV on request).

    uv run python src/scripts/glue/collect_results_glue.py logs/
    uv run python src/scripts/glue/collect_results_glue.py logs/gpart_* logs/lora_* \
        --tasks cola sst2 mrpc qnli rte stsb --latex table.tex --csv table.csv

Each cell: the task's primary metric (MCC for CoLA, Pearson for STS-B, accuracy otherwise) on
GLUE's validation split, ×100, mean ± sample std over seeds. Warnings go to stderr; any error
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpart.configs.tasks import GLUE_TASKS
from gpart.results.cli import collect_main


def main(argv: Sequence[str] | None = None) -> int:
    return collect_main(
        argv,
        prog="collect_results_glue.py",
        description="Aggregate GLUE results.json files over seeds into a table.",
        task_labels={name: t.display_name for name, t in GLUE_TASKS.items()},
        average_label="GLUE Avg.",
    )


if __name__ == "__main__":
    sys.exit(main())
