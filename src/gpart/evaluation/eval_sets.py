"""The math evaluation sets as (question, reference answer) items, and their prompts.

Everything about a set comes from its spec (`gpart.configs.tasks.EVAL_TASKS`): from the
hub, the `source` (its `subsets` concatenated in order) and `split`, the question and
answer columns and the `answer_format`; from a local file (json / jsonl / parquet / csv),
the first of the spec's `local_shapes` whose columns the file has.

Each item keeps the reference *answer* (the GSM8K number, the MATH boxed content), the
``ground_truth`` a predictions file records: `gpart.evaluation.check_answer` accepts it as
it accepts the full solution, so re-scoring needs nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpart.configs import ConfigError
from gpart.configs.tasks import MathEvalTask, eval_task
from gpart.data.loading import DataError, load_hub_dataset, read_split_file
from gpart.data.math import render_prompt
from gpart.evaluation.scoring import reference_of


@dataclass(frozen=True)
class EvalItem:
    """One problem: its position in the set, the question, the reference answer."""

    index: int
    question: str
    ground_truth: str


def reference_answer(dataset: str, text: Any, answer_format: str) -> str:
    """The reference answer in `text`: by `dataset`'s grading rules for a ``solution``
    (the GSM8K number after ``####``, a bare number as is; the last boxed expression of a
    MATH solution, the whole text if it has none), `text` itself for ``plain``.

    Raises:
        ValueError: a GSM8K answer without a number.
    """
    text = str(text)
    return text.strip() if answer_format == "plain" else reference_of(dataset, text)


def shape_names(spec: MathEvalTask) -> str:
    """The local shapes `spec` accepts, for messages."""
    return ", ".join(str(shape) for shape in spec.local_shapes)


def _items(
    rows: Any, dataset: str, question: str, answer: str, answer_format: str, where: str
) -> list[EvalItem]:
    items = []
    for i, (q, a) in enumerate(zip(rows[question], rows[answer], strict=True)):
        if q is None or a is None or not str(q).strip():
            raise DataError(f"{where}: row {i} has an empty {question!r} or {answer!r}")
        try:
            truth = reference_answer(dataset, a, answer_format)
        except ValueError as err:
            raise DataError(f"{where}: row {i}: {err}") from None
        if not truth:
            raise DataError(f"{where}: row {i}: no reference answer in {answer!r}")
        items.append(EvalItem(index=i, question=str(q), ground_truth=truth))
    return items


def _spec(dataset: str) -> MathEvalTask:
    try:
        return eval_task(dataset)
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def load_local_items(dataset: str, path: str | Path) -> list[EvalItem]:
    """Every problem of a local file, in file order, read by `dataset`'s spec.

    Raises:
        DataError: an unknown dataset, no such file, no rows, columns of none of the
            spec's shapes (the message lists them), or a row without a reference answer.
    """
    spec = _spec(dataset)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data_file.{dataset} {path}: no such file")
    table = read_split_file(path)
    columns = set(table.column_names)
    for shape in spec.local_shapes:
        if {shape.question, shape.answer} <= columns:
            return _items(
                table, dataset, shape.question, shape.answer, shape.answer_format, str(path)
            )
    raise DataError(
        f"data_file.{dataset} {path}: columns {sorted(columns)} are none of the known shapes: "
        f"{shape_names(spec)}"
    )


def load_hub_items(dataset: str) -> list[EvalItem]:
    """Every problem of `dataset`'s evaluated split from the hub, as its spec says.

    Raises:
        DataError: an unknown dataset, or the hub is unreachable (the message says how to
            pass a local file).
    """
    from datasets import concatenate_datasets

    spec = _spec(dataset)
    hint = f"give a local file as data_file.{dataset} PATH (columns {shape_names(spec)})"
    parts = [
        load_hub_dataset(spec.source, subset, split=spec.split, offline_hint=hint)
        for subset in (spec.subsets or (spec.subset,))
    ]
    table = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return _items(table, dataset, spec.question_column, spec.answer_column,
                  spec.answer_format, f"{spec.source} ({spec.split})")  # fmt: skip


def load_eval_items(
    dataset: str, data_file: str | Path | None = None, max_samples: int | None = None
) -> list[EvalItem]:
    """The first `max_samples` problems (all: None) of `dataset`, from `data_file` or the hub.

    Raises:
        DataError: see `load_local_items` / `load_hub_items`; `max_samples` below 1.
    """
    if max_samples is not None and max_samples < 1:
        raise DataError(f"max_samples {max_samples}: give 1 or more")
    items = load_local_items(dataset, data_file) if data_file else load_hub_items(dataset)
    return items if max_samples is None else items[:max_samples]


def build_prompts(
    items: Sequence[EvalItem], template: str, *, system_prompt: str | None, tokenizer: Any
) -> list[str]:
    """Each problem's prompt: its question in `template` (`gpart.data.math.render_prompt`,
    the text training put before the response)."""
    return [
        render_prompt(template, it.question, system_prompt=system_prompt, tokenizer=tokenizer)
        for it in items
    ]


__all__ = [
    "EvalItem",
    "build_prompts",
    "load_eval_items",
    "load_hub_items",
    "load_local_items",
    "reference_answer",
    "shape_names",
]
