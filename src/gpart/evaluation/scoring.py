"""Score completions against references, and re-score a saved ``predictions.jsonl``.

One mechanism for both: `score_completions` takes (completion, ground_truth) pairs of one
dataset and returns each pair's `AnswerResult` and the summary that goes into a results
file; `rescore` reads a predictions file, runs `score_completions` on it and writes
``predictions.rescored.jsonl`` and ``results.rescored.json`` beside it. A dataset is
checked by the rules its spec names (`gpart.configs.tasks.MathEvalTask.grading`):
``gsm8k`` (numbers) or ``math`` (boxed LaTeX).

Graders (`GRADERS`): ``gpart``, ours (`gpart.evaluation.answers`, `.equivalence`);
``official``, the paper's rules as its code ran them (`gpart.evaluation.official`);
``math-verify``, Hugging Face's MATH grader (the optional ``math-verify`` extra). Several can
score one set side by side: the first is the primary (the top-level ``accuracy``), and the
summary gives every grader's accuracy and how many problems each pair disagrees on.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from gpart.configs.tasks import EVAL_TASKS, eval_task
from gpart.evaluation.answers import (
    gsm8k_equal,
    gsm8k_prediction,
    gsm8k_reference,
    harness_exact_match,
    harness_flexible_extract,
    harness_strict_extract,
    math_prediction,
    math_reference,
)
from gpart.evaluation.equivalence import DEFAULT_TIMEOUT, SympyWorker, default_worker, math_equal
from gpart.evaluation.official import official_check
from gpart.results.collect import RESCORED_RESULTS
from gpart.results.io import write_json_atomic, write_text_atomic

RESCORED_PREDICTIONS = "predictions.rescored.jsonl"
REQUIRED_FIELDS = ("index", "completion", "ground_truth")
GRADERS = ("gpart", "official", "math-verify")
DEFAULT_GRADERS = ("gpart", "official")
MATH_VERIFY_INSTALL = (
    "the math-verify grader needs the math-verify package, an optional extra: "
    "uv sync --extra math-verify (or leave math-verify out of --grader)"
)


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
    """`score_completions`' answer: one result per pair by the primary grader, the summary
    of them all, and every grader's results (`by_grader`, in the graders' order)."""

    results: list[AnswerResult]
    summary: dict[str, Any]
    by_grader: dict[str, list[AnswerResult]]

    def verdicts(self, i: int) -> dict[str, dict[str, Any]]:
        """Pair `i`'s verdict by every grader: ``{"gpart": {"prediction": "18", "correct":
        true, "timed_out": false}, ...}`` (a predictions line's ``graders``)."""
        return {
            name: {"prediction": r[i].prediction, "correct": r[i].correct,
                   "timed_out": r[i].timed_out}
            for name, r in self.by_grader.items()
        }  # fmt: skip


def check_graders(graders: Sequence[str]) -> tuple[str, ...]:
    """`graders` without repeats, each known and usable here.

    Raises:
        ValueError: none, an unknown name (with the closest known one), or math-verify
            without its package.
    """
    chosen = tuple(dict.fromkeys(graders))
    if not chosen:
        raise ValueError(f"no grader given (known: {', '.join(GRADERS)})")
    for name in chosen:
        if name not in GRADERS:
            from gpart.configs.errors import did_you_mean  # only on this error path

            raise ValueError(
                f"unknown grader {name!r}{did_you_mean(str(name), GRADERS)} "
                f"(known: {', '.join(GRADERS)})"
            )
    if "math-verify" in chosen and importlib.util.find_spec("math_verify") is None:
        raise ValueError(MATH_VERIFY_INSTALL)
    return chosen


def rules_for(dataset: str) -> str:
    """``gsm8k`` or ``math``: the rules that check `dataset` (its spec's `grading`).

    Raises:
        ValueError: an unknown dataset name (with the closest known one).
    """
    return eval_task(dataset).grading


def reference_of(dataset: str, ground_truth: str | int | float) -> str:
    """The reference answer in `ground_truth` by `dataset`'s rules: the GSM8K number
    (`gsm8k_reference`) or the MATH answer (`math_reference`).

    Raises:
        ValueError: an unknown dataset, or no answer in `ground_truth`.
    """
    if rules_for(dataset) == "gsm8k":
        return gsm8k_reference(ground_truth)
    return math_reference(str(ground_truth))


def check_answer(
    dataset: str,
    completion: str,
    ground_truth: str | int | float,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
    question: str | None = None,
    grader: str = "gpart",
) -> AnswerResult:
    """Check one completion against its reference with `dataset`'s rules, by `grader`.

    Args:
        dataset: an evaluation set's name (`gpart.configs.tasks.EVAL_TASKS`), whose
            `grading` names the rules.
        completion: the model's text.
        ground_truth: the reference: a full solution (GSM8K ``... #### 18``, a MATH solution
            with ``\\boxed{}``) or the bare answer.
        timeout: seconds each sympy check may take (MATH).
        worker: the sympy worker (MATH); the process-wide one by default.
        question: the problem (MATH; ours only): whether it asks for a rounded or decimal
            answer, and to how many places, decides how a decimal compares with the
            reference (`gpart.evaluation.answers.asked_rounding`). None: not known.
        grader: ``gpart`` (ours), ``official`` or ``math-verify`` (module docstring).
            lm-evaluation-harness's GSM8K filters (``harness``) come with every grader.

    Raises:
        ValueError: an unknown dataset or grader, or a reference with no answer in it.
    """
    rules = rules_for(dataset)
    if grader != "gpart":
        check_graders([grader])
        reference = reference_of(dataset, ground_truth)
        harness = _harness(completion, ground_truth) if rules == "gsm8k" else None
        if grader == "official":
            got = official_check(rules, completion, ground_truth, timeout=timeout, worker=worker)
            return AnswerResult(got.prediction, got.correct, got.prediction is None,
                                got.timed_out, harness)  # fmt: skip
        reply = (worker or default_worker()).ask(
            {"a": completion, "b": reference, "rule": "math-verify"}, timeout=timeout
        )
        if reply is None:
            return AnswerResult(None, False, False, timed_out=True, harness=harness)
        prediction = reply.get("prediction")
        return AnswerResult(prediction, bool(reply["equal"]), prediction is None, False, harness)
    if rules == "gsm8k":
        reference = gsm8k_reference(ground_truth)
        prediction = gsm8k_prediction(completion)
        return AnswerResult(
            prediction=prediction,
            correct=gsm8k_equal(prediction, reference),
            unextractable=prediction is None,
            harness=_harness(completion, ground_truth),
        )
    reference = math_reference(str(ground_truth))
    prediction = math_prediction(completion)
    got = math_equal(prediction, reference, timeout=timeout, worker=worker, question=question)
    return AnswerResult(
        prediction=prediction,
        correct=got.equal,
        unextractable=prediction is None,
        timed_out=got.timed_out,
    )


def _harness(completion: str, ground_truth: str | int | float) -> dict[str, dict[str, Any]]:
    """lm-evaluation-harness's two GSM8K filters on `completion`, scored."""
    strict, flexible = harness_strict_extract(completion), harness_flexible_extract(completion)
    return {
        "strict_match": {
            "prediction": strict,
            "correct": harness_exact_match(strict, ground_truth),
        },
        "flexible_extract": {
            "prediction": flexible,
            "correct": harness_exact_match(flexible, ground_truth),
        },
    }


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


def summarize_graders(dataset: str, by_grader: dict[str, list[AnswerResult]]) -> dict[str, Any]:
    """`summarize` of the first (primary) grader's results, plus ``grader`` (its name),
    ``graders`` (each grader's ``accuracy``, ``correct``, ``unextractable``,
    ``timed_out``) and ``disagreements`` (``{"gpart/official": 12}``: problems on which
    the two verdicts differ, for every pair).

    Raises:
        ValueError: no graders, or no results.
    """
    if not by_grader:
        raise ValueError("no grader's results to summarize")
    primary = next(iter(by_grader))
    summary = summarize(dataset, by_grader[primary])
    summary["grader"] = primary
    keys = ("accuracy", "correct", "unextractable", "timed_out")
    summary["graders"] = {
        name: {k: summarize(dataset, results)[k] for k in keys}
        for name, results in by_grader.items()
    }
    summary["disagreements"] = {
        f"{a}/{b}": sum(
            x.correct != y.correct for x, y in zip(by_grader[a], by_grader[b], strict=True)
        )
        for a, b in combinations(by_grader, 2)
    }
    return summary


def score_completions(
    dataset: str,
    pairs: Iterable[tuple[str, str | int | float]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
    graders: Sequence[str] = ("gpart",),
    questions: Sequence[str | None] | None = None,
) -> Scores:
    """Check (completion, ground_truth) pairs of one dataset by each of `graders`; see
    `check_answer`.

    Args:
        questions: the problems, in the pairs' order (ours reads from a MATH problem
            whether it asks for a rounded answer: `check_answer`); None: not known.

    Returns:
        `Scores`: the first grader's ``results`` in the order of `pairs`, their
        `summarize_graders` summary and every grader's results.

    Raises:
        ValueError: an unknown dataset or grader, a reference without an answer, or
            `questions` of another length.
    """
    rules_for(dataset)
    graders = check_graders(graders)
    pairs = list(pairs)
    if questions is not None and len(questions) != len(pairs):
        raise ValueError(f"{len(questions)} questions for {len(pairs)} completions")
    asked = list(questions) if questions is not None else [None] * len(pairs)
    by_grader = {
        name: [
            check_answer(dataset, completion, truth, timeout=timeout, worker=worker,
                         question=question, grader=name)
            for (completion, truth), question in zip(pairs, asked, strict=True)
        ]
        for name in graders
    }  # fmt: skip
    primary = by_grader[graders[0]]
    return Scores(results=primary, summary=summarize_graders(dataset, by_grader),
                  by_grader=by_grader)  # fmt: skip


def _read_predictions(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The dataset and rows of a predictions file, every line checked."""
    folder = path.parent.name if path.parent.name in EVAL_TASKS else None
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
                f"(expected eval/<dataset>/ with a dataset in {', '.join(EVAL_TASKS)})"
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
    graders: Sequence[str] = DEFAULT_GRADERS,
) -> dict[str, Any]:
    """Recompute every prediction of a ``predictions.jsonl`` from its completion and ground
    truth, by each of `graders`, and write the rescored files beside it (atomically).

    Each line is a JSON object with at least ``index``, ``completion``, ``ground_truth``
    and ``dataset`` (a name of `EVAL_TASKS`; without it, the parent folder's name
    as in ``eval/<dataset>/predictions.jsonl``); a ``question`` is used when present.
    ``predictions.rescored.jsonl`` keeps every field and replaces ``prediction``,
    ``correct``, ``unextractable``, ``timed_out`` (the first grader's), ``graders`` (every
    grader's verdict) and ``harness`` for GSM8K; ``results.rescored.json`` holds the
    `summarize_graders` summary plus ``changed`` (rows whose ``correct`` differs from the
    file's, when it had one) and the timeout used.

    Args:
        predictions_path: the ``predictions.jsonl`` to re-score.
        timeout: seconds each sympy check may take.
        worker: the sympy worker; the process-wide one by default.
        graders: the graders, the primary first (`GRADERS`).

    Returns:
        The summary written to ``results.rescored.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line (the message names it), an unknown or mixed dataset,
            a reference without an answer, an empty file, or an unusable grader.
    """
    path = Path(predictions_path)
    if not path.is_file():
        raise FileNotFoundError(f"no predictions file at {path}")
    graders = check_graders(graders)
    dataset, rows = _read_predictions(path)
    for row in rows:
        try:
            reference_of(dataset, row["ground_truth"])
        except ValueError as err:
            raise ValueError(f"{path}: index {row['index']!r}: {err}") from None
    scores = score_completions(
        dataset,
        [(row["completion"], row["ground_truth"]) for row in rows],
        timeout=timeout,
        worker=worker,
        graders=graders,
        questions=[row.get("question") for row in rows],
    )
    summary = dict(scores.summary)
    summary["changed"] = sum(
        "correct" in row and bool(row["correct"]) != result.correct
        for row, result in zip(rows, scores.results, strict=True)
    )
    summary["timeout_s"] = timeout
    summary["source"] = path.name
    lines = []
    for i, (row, result) in enumerate(zip(rows, scores.results, strict=True)):
        fresh = {k: v for k, v in row.items() if k not in ("harness", "graders")}  # no stale one
        record = {**fresh, **result.to_dict(), "graders": scores.verdicts(i)}
        lines.append(json.dumps(record, ensure_ascii=False))
    write_text_atomic(path.with_name(RESCORED_PREDICTIONS), "\n".join(lines) + "\n")
    write_json_atomic(path.with_name(RESCORED_RESULTS), summary)
    return summary
