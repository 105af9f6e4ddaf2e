"""Collect finished math runs into paper tables, one per backbone: accuracy by dataset.

    uv run python src/scripts/math/collect_results_math.py logs/
    uv run python src/scripts/math/collect_results_math.py logs/ --model_size qwen2.5-0.5b \
        --tasks gsm8k math --latex math.tex --csv math.csv
    uv run python src/scripts/math/collect_results_math.py logs/ --grader official

Rows are the training runs (method and settings), columns the evaluation datasets: each
cell is the accuracy from ``<run dir>/eval/<dataset>/results.json`` (``eval_math.py``) ×100,
mean ± sample std over seeds, with the seeds and trainable parameters; a run not evaluated
on a dataset has an empty cell (—). The last column is the run's held-out MetaMathQA loss
(``results.json`` test.loss, as it is; lower is better), empty for runs that held nothing
out (``data.heldout_samples 0``, the presets). ``--grader official`` (or
``math-verify``) fills the cells with that grader's accuracy instead of ours (``gpart``).
Base models evaluated alone (``eval_math.py --base_model M --output_dir D``) are rows of
their own ("base model (M)", 0 parameters). Warnings go to stderr; any error is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpart.configs.tasks import EVAL_TASKS
from gpart.evaluation import GRADERS
from gpart.results import with_evaluations
from gpart.results.cli import collect_main
from gpart.results.collect import load_base_evaluations

# The evaluation sets as their specs name them, then the training run's own number.
COLUMNS = {
    **{name: spec.display_name for name, spec in EVAL_TASKS.items()},
    "metamathqa": "Held-out loss",
}


def main(argv: Sequence[str] | None = None) -> int:
    return collect_main(
        argv,
        prog="collect_results_math.py",
        description="Aggregate math runs (GSM8K / MATH accuracy over seeds) into tables.",
        task_labels=COLUMNS,
        average_label=None,  # the datasets' mean is no number the papers report
        by_model_size=True,
        expand=with_evaluations,
        task_decimals={"metamathqa": 3},
        graders=GRADERS,
        standalone=load_base_evaluations,
    )


if __name__ == "__main__":
    sys.exit(main())
