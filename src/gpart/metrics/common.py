"""Metrics computed locally with numpy (no `evaluate` download at run time), for any domain.

Degenerate inputs give 0.0 instead of NaN: a correlation with constant predictions (a
regression head early in training), an MCC whose denominator vanishes (one predicted class),
an F1 with no positive predictions nor labels. The values agree with scikit-learn's
conventions, and a NaN first evaluation would otherwise stall `Trainer`'s best-model tracking
(nothing compares greater than NaN).

`METRIC_FNS` maps the metric names task specs use (`gpart.configs.tasks`) to functions of
``(predictions, labels)``; a domain's scoring (e.g. `gpart.metrics.glue`) looks them up there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

# Keys `Trainer.evaluate` adds that are not metrics of the predictions.
_NON_METRIC_SUFFIXES = (
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "epoch",
    "model_preparation_time",
)


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


METRIC_FNS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "f1": binary_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


# --------------------------------------------------------------------------------------------
# Trainer's metric dictionaries


def strip_metric_prefix(
    metrics: Mapping[str, Any], prefix: str, keep: Iterable[str] = ()
) -> dict[str, float]:
    """``{"test_accuracy": .9, "test_loss": .3, "test_runtime": 1}`` -> ``{"accuracy": .9}``.

    Drops `Trainer`'s bookkeeping (loss, runtime, throughput, epoch), keeps the metrics and
    the names in `keep` (a task whose metric is the loss keeps ``loss``).
    """
    keep = set(keep)
    head = f"{prefix}_" if prefix else ""
    out = {}
    for key, value in metrics.items():
        if not key.startswith(head):
            continue
        name = key[len(head) :]
        if name not in keep and name.endswith(_NON_METRIC_SUFFIXES):
            continue
        out[name] = float(value)
    return out
