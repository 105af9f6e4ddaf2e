"""Score completions against references, and re-score a saved ``predictions.jsonl``.

One mechanism for both: `score_completions` takes (completion, ground_truth) pairs of one
dataset and returns each pair's `AnswerResult` and the summary that goes into a results
file; `rescore` reads a predictions file, runs `score_completions` on it and writes
``predictions.rescored.jsonl`` and ``results.rescored.json`` beside it. Rules per dataset:
``gsm8k`` (numbers), ``math`` and ``math500`` (boxed LaTeX; MATH-500 is a subset of MATH's
test split, Lightman et al., 2023).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpart.evaluation.answers import (
    asked_places,
    gsm8k_equal,
    gsm8k_prediction,
    gsm8k_reference,
    harness_exact_match,
    harness_flexible_extract,
    harness_strict_extract,
    math_prediction,
    math_reference,
)
from gpart.evaluation.equivalence import DEFAULT_TIMEOUT, SympyWorker, math_equal
from gpart.results.io import write_json_atomic, write_text_atomic

# dataset name -> the rules that check it
DATASET_RULES = {"gsm8k": "gsm8k", "math": "math", "math500": "math"}
RESCORED_PREDICTIONS = "predictions.rescored.jsonl"
RESCORED_RESULTS = "results.rescored.json"
REQUIRED_FIELDS = ("index", "completion", "ground_truth")


@dataclass(frozen=True)
class AnswerResult:
    """One completion, checked.

    Attributes:
        prediction: the extracted answer (GSM8K: canonical number text such as ``-1000``,
            ``3/4``; MATH: the raw boxed text), or None.
        correct: the prediction equals the reference.
        unextractable: no answer could be extracted (so not correct).
        timed_out: a sympy check ran out of time (counted as not correct).
        harness: GSM8K only: lm-evaluation-harness's ``strict_match`` and
            ``flexible_extract`` predictions and correctness, ``{"strict_match":
            {"prediction": "18", "correct": true}, ...}``; None for MATH.
    """

    prediction: str | None
    correct: bool
    unextractable: bool
    timed_out: bool = False
    harness: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        if row["harness"] is None:
            del row["harness"]
        return row


@dataclass(frozen=True)
class Scores:
    """`score_completions`' answer: one result per pair and the summary of them all."""

    results: list[AnswerResult]
    summary: dict[str, Any]


def rules_for(dataset: str) -> str:
    """``gsm8k`` or ``math``: the rules that check `dataset`.

    Raises:
        ValueError: an unknown dataset name (with the closest known one).
    """
    rules = DATASET_RULES.get(dataset)
    if rules is None:
        from gpart.configs.errors import did_you_mean  # only on this error path

        raise ValueError(
            f"unknown dataset {dataset!r} for answer checking{did_you_mean(str(dataset), DATASET_RULES)}"
            f" (known: {', '.join(DATASET_RULES)})"
        )
    return rules


def check_answer(
    dataset: str,
    completion: str,
    ground_truth: str | int | float,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
    question: str | None = None,
) -> AnswerResult:
    """Check one completion against its reference with `dataset`'s rules.

    Args:
        dataset: ``gsm8k``, ``math`` or ``math500``.
        completion: the model's text.
        ground_truth: the reference: a full solution (GSM8K ``... #### 18``, a MATH solution
            with ``\\boxed{}``) or the bare answer.
        timeout: seconds each sympy check may take (MATH).
        worker: the sympy worker (MATH); the process-wide one by default.
        question: the problem (MATH): the precision it asks for, if any, decides between
            decimals (`gpart.evaluation.answers.asked_places`).

    Raises:
        ValueError: an unknown dataset, or a reference with no answer in it.
    """
    if rules_for(dataset) == "gsm8k":
        reference = gsm8k_reference(ground_truth)
        prediction = gsm8k_prediction(completion)
        strict, flexible = harness_strict_extract(completion), harness_flexible_extract(completion)
        harness = {
            "strict_match": {
                "prediction": strict,
                "correct": harness_exact_match(strict, ground_truth),
            },
            "flexible_extract": {
                "prediction": flexible,
                "correct": harness_exact_match(flexible, ground_truth),
            },
        }
        return AnswerResult(
            prediction=prediction,
            correct=gsm8k_equal(prediction, reference),
            unextractable=prediction is None,
            harness=harness,
        )
    reference = math_reference(str(ground_truth))
    prediction = math_prediction(completion)
    got = math_equal(
        prediction, reference, timeout=timeout, worker=worker, places=asked_places(question)
    )
    return AnswerResult(
        prediction=prediction,
        correct=got.equal,
        unextractable=prediction is None,
        timed_out=got.timed_out,
    )


def summarize(dataset: str, results: list[AnswerResult]) -> dict[str, Any]:
    """The results-file summary of checked answers: ``accuracy`` in [0, 1], ``total``,
    ``correct``, ``unextractable``, ``timed_out``; for GSM8K also the harness's
    ``strict_match`` and ``flexible_extract`` accuracies.

    Raises:
        ValueError: no results (an accuracy of nothing is undefined).
    """
    if not results:
        raise ValueError(f"{dataset}: no completions to score")
    total = len(results)
    summary: dict[str, Any] = {
        "dataset": dataset,
        "accuracy": sum(r.correct for r in results) / total,
        "total": total,
        "correct": sum(r.correct for r in results),
        "unextractable": sum(r.unextractable for r in results),
        "timed_out": sum(r.timed_out for r in results),
    }
    if rules_for(dataset) == "gsm8k":
        for name in ("strict_match", "flexible_extract"):
            summary[name] = sum(bool(r.harness and r.harness[name]["correct"]) for r in results)
            summary[name] /= total
    return summary


def score_completions(
    dataset: str,
    pairs: Iterable[tuple[str, str | int | float]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
) -> Scores:
    """Check (completion, ground_truth) pairs of one dataset; see `check_answer`.

    Returns:
        `Scores`: ``results`` in the order of `pairs` and their `summarize` summary.
    """
    rules_for(dataset)
    results = [
        check_answer(dataset, completion, truth, timeout=timeout, worker=worker)
        for completion, truth in pairs
    ]
    return Scores(results=results, summary=summarize(dataset, results))


def _read_predictions(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The dataset and rows of a predictions file, every line checked."""
    folder = path.parent.name if path.parent.name in DATASET_RULES else None
    rows: list[dict[str, Any]] = []
    dataset = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where} is not valid JSON ({err})") from err
        if not isinstance(row, dict):
            raise ValueError(f"{where} is a JSON {type(row).__name__}, not an object")
        missing = [key for key in REQUIRED_FIELDS if key not in row]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(map(repr, missing))}")
        if not isinstance(row["completion"], str):
            raise ValueError(f"{where}: 'completion' must be a string, got {row['completion']!r}")
        row_dataset = row.get("dataset", folder)
        if row_dataset is None:
            raise ValueError(
                f"{where} has no 'dataset' and the folder {path.parent.name!r} names none "
                f"(expected eval/<dataset>/ with a dataset in {', '.join(DATASET_RULES)})"
            )
        try:
            rules_for(row_dataset)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        if dataset is None:
            dataset = row_dataset
        elif row_dataset != dataset:
            raise ValueError(
                f"{where}: dataset {row_dataset!r}, but earlier lines are {dataset!r} "
                "(one dataset per predictions file)"
            )
        rows.append(row)
    if dataset is None:
        raise ValueError(f"{path}: no predictions in the file")
    return dataset, rows


def rescore(
    predictions_path: str | Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
) -> dict[str, Any]:
    """Recompute every prediction of a ``predictions.jsonl`` from its completion and ground
    truth, and write the rescored files beside it (atomically).

    Each line is a JSON object with at least ``index``, ``completion``, ``ground_truth``
    and ``dataset`` (``gsm8k``, ``math``, ``math500``; without it, the parent folder's name
    as in ``eval/<dataset>/predictions.jsonl``). ``predictions.rescored.jsonl`` keeps every
    field and replaces ``prediction``, ``correct``, ``unextractable``, ``timed_out`` (and
    ``harness`` for GSM8K); ``results.rescored.json`` holds the `summarize` summary plus
    ``changed`` (rows whose ``correct`` differs from the file's, when it had one) and the
    timeout used.

    Args:
        predictions_path: the ``predictions.jsonl`` to re-score.
        timeout: seconds each sympy check may take (MATH).
        worker: the sympy worker (MATH); the process-wide one by default.

    Returns:
        The summary written to ``results.rescored.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line (the message names it), an unknown or mixed dataset,
            a reference without an answer, or an empty file.
    """
    path = Path(predictions_path)
    if not path.is_file():
        raise FileNotFoundError(f"no predictions file at {path}")
    dataset, rows = _read_predictions(path)
    results = []
    for row in rows:
        try:
            results.append(
                check_answer(
                    dataset, row["completion"], row["ground_truth"], timeout=timeout, worker=worker
                )
            )
        except ValueError as err:
            raise ValueError(f"{path}: index {row['index']!r}: {err}") from None
    summary = summarize(dataset, results)
    summary["changed"] = sum(
        "correct" in row and bool(row["correct"]) != result.correct
        for row, result in zip(rows, results, strict=True)
    )
    summary["timeout_s"] = timeout
    summary["source"] = path.name
    lines = []
    for row, result in zip(rows, results, strict=True):
        fresh = {key: value for key, value in row.items() if key != "harness"}  # no stale one
        lines.append(json.dumps({**fresh, **result.to_dict()}, ensure_ascii=False))
    write_text_atomic(path.with_name(RESCORED_PREDICTIONS), "\n".join(lines) + "\n")
    write_json_atomic(path.with_name(RESCORED_RESULTS), summary)
    return summary
