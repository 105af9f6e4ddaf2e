"""Collect finished image-classification runs into paper tables, one per backbone size.

    uv run python src/scripts/vision/collect_results_ViT.py logs/
    uv run python src/scripts/vision/collect_results_ViT.py logs/ --model_size base \
        --latex vit_base.tex --csv vit_base.csv

Rows are methods, columns the nine datasets and their average; each cell is test accuracy
×100, mean ± sample std over seeds, with the number of seeds and the trainable parameters
without the head. Warnings go to stderr; any error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gpart.configs.tasks import VISION_TASKS
from gpart.results.cli import collect_main


def main(argv: Sequence[str] | None = None) -> int:
    return collect_main(
        argv,
        prog="collect_results_ViT.py",
        description="Aggregate image-classification results.json files into tables.",
        task_labels={name: t.display_name for name, t in VISION_TASKS.items()},
        average_label="Avg.",
        by_model_size=True,
    )


if __name__ == "__main__":
    sys.exit(main())
