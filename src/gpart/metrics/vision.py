"""Image classification scoring: top-1 accuracy from `Trainer`'s logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpart.metrics.common import accuracy


def make_compute_metrics() -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for `transformers.Trainer`: ``{"accuracy": top-1}``."""

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions
        if isinstance(logits, tuple | list):
            logits = logits[0]
        labels = eval_pred.label_ids
        if isinstance(labels, tuple | list):
            labels = labels[0]
        return {"accuracy": accuracy(np.asarray(logits).argmax(axis=-1), labels)}

    return compute_metrics
