"""GLUE scoring: from `Trainer`'s logits to the numbers ``results.json`` and tables report.

Which metrics each task has, and which one is primary, is read from the task spec
(`gpart.configs.tasks.GLUE_TASKS`); the metric functions are `gpart.metrics.common`'s.

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

Values are in [0, 1] / [-1, 1]; tables multiply by 100.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gpart.configs.tasks import TextClassificationTask, get_task
from gpart.metrics.common import METRIC_FNS


def _spec(task: str | TextClassificationTask) -> TextClassificationTask:
    return task if isinstance(task, TextClassificationTask) else get_task("glue", task)


def logits_to_predictions(task: str | TextClassificationTask, logits: Any) -> np.ndarray:
    """Model outputs -> class ids (argmax) or regression scores (stsb).

    Accepts what `Trainer` collects: an array, or a tuple whose first item is the logits.
    """
    spec = _spec(task)
    if isinstance(logits, tuple | list):
        logits = logits[0]
    logits = np.asarray(logits)
    if spec.is_regression:
        return logits.reshape(-1).astype(np.float64)
    if logits.ndim != 2:
        raise ValueError(
            f"{spec.name}: expected logits of shape (n, num_labels), got {logits.shape}"
        )
    return logits.argmax(axis=-1)


def glue_metrics(
    task: str | TextClassificationTask, predictions: Any, labels: Any
) -> dict[str, float]:
    """All metrics of `task` on class ids / scores (not logits; see `logits_to_predictions`)."""
    spec = _spec(task)
    return {name: METRIC_FNS[name](predictions, labels) for name in spec.metrics}


def make_compute_metrics(task: str | TextClassificationTask) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for `transformers.Trainer`: ``EvalPrediction -> {metric: value}``.

    `Trainer` prefixes the keys itself (``eval_mcc``); model selection tracks the task
    spec's ``primary_metric`` with ``greater_is_better=True``.
    """
    spec = _spec(task)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        predictions = logits_to_predictions(spec, eval_pred.predictions)
        labels = eval_pred.label_ids
        if isinstance(labels, tuple | list):
            labels = labels[0]
        return glue_metrics(spec, predictions, labels)

    return compute_metrics


def merge_split_metrics(
    task: str | TextClassificationTask, per_split: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Flatten the metrics of the reported split(s) into ``results.json["test"]``.

    Args:
        task: Task name or spec; its ``test_splits`` give each split's suffix (mnli:
            ``validation_matched`` plain, ``validation_mismatched`` ``_mm``), so the primary
            metric keeps its plain name.
        per_split: ``{split: {metric: value}}`` (Trainer's prefix already stripped).

    Raises:
        ValueError: a split that is not reported, or a metric of the task missing.
    """
    spec = _spec(task)
    suffixes = dict(spec.test_splits)
    out: dict[str, float] = {}
    for split, metrics in per_split.items():
        if split not in suffixes:
            raise ValueError(f"{spec.name}: unexpected split '{split}'; expected {list(suffixes)}")
        for name, value in metrics.items():
            out[f"{name}{suffixes[split]}"] = float(value)
    missing = [m for m in spec.metrics if m not in out]
    if missing:
        raise ValueError(f"{spec.name}: metrics {missing} missing from {sorted(out)}")
    return out
