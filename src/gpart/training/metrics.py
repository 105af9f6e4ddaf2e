"""GLUE metrics, computed locally with numpy (no `evaluate` download at run time).

Per task (values in [0, 1] / [-1, 1]; tables multiply by 100):

========  ==========================  ===============
task      metrics                     primary (paper)
========  ==========================  ===============
cola      ``mcc`` (Matthews corr.)    ``mcc``
sst2      ``accuracy``                ``accuracy``
mrpc      ``accuracy``, ``f1``        ``accuracy``
qqp       ``accuracy``, ``f1``        ``accuracy``
stsb      ``pearson``, ``spearman``   ``pearson``
mnli      ``accuracy`` (+ ``_mm``)    ``accuracy``
qnli      ``accuracy``                ``accuracy``
rte       ``accuracy``                ``accuracy``
========  ==========================  ===============

F1 is of the positive class (label 1: ``equivalent`` / ``duplicate``), as GLUE reports it.

Degenerate inputs give 0.0 instead of NaN: a correlation with constant predictions (a
regression head early in training), an MCC whose denominator vanishes (one predicted class),
an F1 with no positive predictions nor labels. The values agree with scikit-learn's
conventions, and a NaN first evaluation would otherwise stall `Trainer`'s best-model tracking
(nothing compares greater than NaN).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearman"),
    "mnli": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
}
REGRESSION_TASKS = frozenset({"stsb"})
_PRIMARY = {"cola": "mcc", "stsb": "pearson"}

# Keys `Trainer.evaluate` adds that are not metrics of the predictions.
_NON_METRIC_SUFFIXES = (
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "epoch",
    "model_preparation_time",
)


def _check_task(task: str) -> None:
    if task not in TASK_METRICS:
        raise ValueError(f"unknown GLUE task '{task}'; choose from {list(TASK_METRICS)}")


def primary_metric(task: str) -> str:
    """The metric a paper reports for ``task``: mcc (cola), pearson (stsb), else accuracy."""
    _check_task(task)
    return _PRIMARY.get(task, "accuracy")


# --------------------------------------------------------------------------------------------
# Plain metrics on 1-D arrays


def _pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"predictions {p.shape} and labels {y.shape} differ in length")
    if p.size == 0:
        raise ValueError("cannot compute a metric on zero examples")
    return p, y


def accuracy(predictions: Any, labels: Any) -> float:
    p, y = _pair(predictions, labels)
    return float(np.mean(p == y))


def binary_f1(predictions: Any, labels: Any, positive: int = 1) -> float:
    """F1 of the ``positive`` class: 2 TP / (2 TP + FP + FN); 0.0 when that is 0/0."""
    p, y = _pair(predictions, labels)
    pp, yp = p == positive, y == positive
    tp = np.sum(pp & yp)
    denom = 2 * tp + np.sum(pp & ~yp) + np.sum(~pp & yp)
    return float(2 * tp / denom) if denom else 0.0


def matthews_corrcoef(predictions: Any, labels: Any) -> float:
    """Matthews correlation (multi-class form, equal to the binary phi coefficient for 2).

    From the confusion matrix C (s = total, c = trace, t = true counts, q = predicted
    counts): (c*s - t.q) / sqrt((s^2 - q.q) (s^2 - t.t)); 0.0 when the denominator is 0.
    """
    p, y = _pair(predictions, labels)
    _, inv = np.unique(np.concatenate([y, p]), return_inverse=True)
    y_id, p_id = inv[: y.size], inv[y.size :]
    k = int(inv.max()) + 1
    t = np.bincount(y_id, minlength=k).astype(np.float64)
    q = np.bincount(p_id, minlength=k).astype(np.float64)
    c = float(np.sum(y_id == p_id))
    s = float(y.size)
    denom = np.sqrt((s * s - q @ q) * (s * s - t @ t))
    return float((c * s - t @ q) / denom) if denom > 0 else 0.0


def pearson(predictions: Any, labels: Any) -> float:
    """Pearson correlation; 0.0 if either side is constant."""
    p, y = _pair(predictions, labels)
    p = p.astype(np.float64) - p.mean(dtype=np.float64)
    y = y.astype(np.float64) - y.mean(dtype=np.float64)
    denom = np.sqrt((p @ p) * (y @ y))
    if denom == 0:
        return 0.0
    return float(np.clip((p @ y) / denom, -1.0, 1.0))


def average_ranks(x: Any) -> np.ndarray:
    """Ranks 1..n; tied values share the mean of the ranks they span."""
    x = np.asarray(x).reshape(-1)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # Starts of runs of equal values, plus the end.
    bounds = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1], [True])))
    run_rank = (bounds[:-1] + 1 + bounds[1:]) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, np.diff(bounds))
    return ranks


def spearman(predictions: Any, labels: Any) -> float:
    """Spearman rank correlation: Pearson of the average ranks; 0.0 if either is constant."""
    p, y = _pair(predictions, labels)
    return pearson(average_ranks(p), average_ranks(y))


_METRIC_FNS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "f1": binary_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


# --------------------------------------------------------------------------------------------
# GLUE


def logits_to_predictions(task: str, logits: Any) -> np.ndarray:
    """Model outputs -> class ids (argmax) or regression scores (stsb).

    Accepts what `Trainer` collects: an array, or a tuple whose first item is the logits.
    """
    _check_task(task)
    if isinstance(logits, tuple | list):
        logits = logits[0]
    logits = np.asarray(logits)
    if task in REGRESSION_TASKS:
        return logits.reshape(-1).astype(np.float64)
    if logits.ndim != 2:
        raise ValueError(f"{task}: expected logits of shape (n, num_labels), got {logits.shape}")
    return logits.argmax(axis=-1)


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """All metrics of ``task`` on class ids / scores (not logits; see
    :func:`logits_to_predictions`)."""
    _check_task(task)
    return {name: _METRIC_FNS[name](predictions, labels) for name in TASK_METRICS[task]}


def make_compute_metrics(task: str) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for `transformers.Trainer`: ``EvalPrediction -> {metric: value}``.

    `Trainer` prefixes the keys itself (``eval_mcc``); set ``metric_for_best_model`` to
    :func:`primary_metric` with ``greater_is_better=True``.
    """
    _check_task(task)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        predictions = logits_to_predictions(task, eval_pred.predictions)
        labels = eval_pred.label_ids
        if isinstance(labels, tuple | list):
            labels = labels[0]
        return glue_metrics(task, predictions, labels)

    return compute_metrics


def strip_metric_prefix(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """``{"test_accuracy": .9, "test_loss": .3, "test_runtime": 1}`` -> ``{"accuracy": .9}``.

    Drops `Trainer`'s bookkeeping (loss, runtime, throughput, epoch), keeps the metrics.
    """
    head = f"{prefix}_" if prefix else ""
    out = {}
    for key, value in metrics.items():
        if not key.startswith(head):
            continue
        name = key[len(head) :]
        if name.endswith(_NON_METRIC_SUFFIXES):
            continue
        out[name] = float(value)
    return out


def merge_split_metrics(
    task: str,
    per_split: Mapping[str, Mapping[str, float]],
    suffixes: Mapping[str, str],
) -> dict[str, float]:
    """Flatten metrics of several reported splits into ``results.json["test"]``.

    Args:
        per_split: ``{split: {metric: value}}`` (prefix already stripped).
        suffixes: ``{split: suffix}``, e.g. mnli
            ``{"validation_matched": "", "validation_mismatched": "_mm"}`` (see
            ``GlueTask.test_splits``), so the primary metric keeps its plain name.
    """
    _check_task(task)
    out: dict[str, float] = {}
    for split, metrics in per_split.items():
        if split not in suffixes:
            raise ValueError(f"{task}: unexpected split '{split}'; expected {list(suffixes)}")
        for name, value in metrics.items():
            out[f"{name}{suffixes[split]}"] = float(value)
    missing = [m for m in TASK_METRICS[task] if m not in out]
    if missing:
        raise ValueError(f"{task}: metrics {missing} missing from {sorted(out)}")
    return out
