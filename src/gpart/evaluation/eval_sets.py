"""The math evaluation sets (GSM8K, MATH, MATH-500) as (question, reference answer) items.

From the hub, as `gpart.configs.tasks` describes each set: ``openai/gsm8k`` (``main``,
test: 1,319), ``EleutherAI/hendrycks_math`` (every subject's test split, concatenated in the
task's fixed order: 5,000), ``HuggingFaceH4/MATH-500`` (test: 500). Or from a local file
(json / jsonl / parquet / csv) in any of the shapes these sets are passed around in, told
apart by their columns:

=====================  ===========================================================
``question/answer``    GSM8K: the answer is a solution ending in ``#### <number>``
``problem/answer``     MATH-500: the answer column is the reference itself
``problem/solution``   MATH: the reference is the solution's last ``\\boxed{}``
``instruction/output`` MetaMath's eval files (``MATH_test.jsonl``): the output holds
                       the reference as the dataset's rules read it (``####`` or a box)
``query/response``     MetaMath's ``GSM8K_test.jsonl`` shape, read the same way
=====================  ===========================================================

Each item keeps the reference *answer* (the GSM8K number, the MATH boxed content), the
``ground_truth`` a predictions file records: `gpart.evaluation.check_answer` accepts it as
it accepts the full solution, so re-scoring needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpart.configs import get_task
from gpart.configs.tasks import MathReasoningTask
from gpart.data.loading import DataError, load_hub_dataset, read_split_file
from gpart.evaluation.scoring import DATASET_RULES, reference_of, rules_for

# (question column, answer column, how the answer column holds the reference), tried in
# this order: a file with problem, solution *and* answer (MATH-500's own) uses its answer.
LOCAL_SHAPES: tuple[tuple[str, str, str], ...] = (
    ("question", "answer", "solution"),
    ("problem", "answer", "plain"),
    ("problem", "solution", "solution"),
    ("instruction", "output", "solution"),
    ("query", "response", "solution"),
)
SHAPE_NAMES = (
    "question/answer (GSM8K), problem/answer (MATH-500), problem/solution (MATH), "
    "instruction/output or query/response (MetaMath)"
)


@dataclass(frozen=True)
class EvalItem:
    """One problem: its position in the set, the question, the reference answer."""

    index: int
    question: str
    ground_truth: str


def reference_answer(dataset: str, text: Any, kind: str) -> str:
    """The reference answer in `text`: the GSM8K number after ``####`` (a bare number is
    taken as is), the last boxed expression of a MATH solution (the whole text if it has
    none), or `text` itself for ``plain``.

    Raises:
        ValueError: a GSM8K answer without a number.
    """
    text = str(text)
    return text.strip() if kind == "plain" else reference_of(dataset, text)


def _items(
    rows: Any, dataset: str, question: str, answer: str, kind: str, where: str
) -> list[EvalItem]:
    items = []
    for i, (q, a) in enumerate(zip(rows[question], rows[answer], strict=True)):
        if q is None or a is None or not str(q).strip():
            raise DataError(f"{where}: row {i} has an empty {question!r} or {answer!r}")
        try:
            truth = reference_answer(dataset, a, kind)
        except ValueError as err:
            raise DataError(f"{where}: row {i}: {err}") from None
        if not truth:
            raise DataError(f"{where}: row {i}: no reference answer in {answer!r}")
        items.append(EvalItem(index=i, question=str(q), ground_truth=truth))
    return items


def load_local_items(dataset: str, path: str | Path) -> list[EvalItem]:
    """Every problem of a local file, in file order, read by `dataset`'s rules.

    Raises:
        DataError: no such file, no rows, columns of no known shape (the message lists
            the shapes), or a row without a reference answer.
    """
    rules_for(dataset)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--data_file {path}: no such file")
    table = read_split_file(path)
    columns = set(table.column_names)
    for question, answer, kind in LOCAL_SHAPES:
        if {question, answer} <= columns:
            return _items(table, dataset, question, answer, kind, str(path))
    raise DataError(
        f"--data_file {path}: columns {sorted(columns)} are none of the known shapes: {SHAPE_NAMES}"
    )


def load_hub_items(dataset: str) -> list[EvalItem]:
    """Every problem of `dataset`'s test set from the hub (see the module docstring).

    Raises:
        DataError: the hub is unreachable (the message says how to pass a local file).
    """
    from datasets import concatenate_datasets

    spec = get_task("math", dataset)
    if not isinstance(spec, MathReasoningTask):
        raise DataError(f"{dataset!r} is not an evaluation set ({', '.join(DATASET_RULES)})")
    hint = f"give a local file with --data_file (columns {SHAPE_NAMES})"
    split = spec.splits["eval"]
    parts = [
        load_hub_dataset(spec.source, subset, split=split, offline_hint=hint)
        for subset in (spec.subsets or (spec.subset,))
    ]
    table = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    kind = "plain" if spec.answer_format == "plain" else "solution"
    return _items(
        table, dataset, spec.question_column, spec.answer_column, kind, f"{spec.source} ({split})"
    )


def load_eval_items(
    dataset: str, data_file: str | Path | None = None, max_samples: int | None = None
) -> list[EvalItem]:
    """The first `max_samples` problems (all: None) of `dataset`, from `data_file` or the hub.

    Raises:
        DataError: see `load_local_items` / `load_hub_items`; `max_samples` below 1.
    """
    if max_samples is not None and max_samples < 1:
        raise DataError(f"--max_samples {max_samples}: give 1 or more")
    items = load_local_items(dataset, data_file) if data_file else load_hub_items(dataset)
    return items if max_samples is None else items[:max_samples]


__all__ = [
    "LOCAL_SHAPES",
    "EvalItem",
    "load_eval_items",
    "load_hub_items",
    "load_local_items",
    "reference_answer",
]
