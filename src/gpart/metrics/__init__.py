"""Metrics: generic numpy metric functions (`common`) and each domain's scoring beside them
(`glue`: logits -> predictions -> the task's metrics, merged over reported splits)."""

from gpart.metrics.common import (
    METRIC_FNS,
    accuracy,
    average_ranks,
    binary_f1,
    matthews_corrcoef,
    pearson,
    spearman,
    strip_metric_prefix,
)

__all__ = [
    "METRIC_FNS",
    "accuracy",
    "average_ranks",
    "binary_f1",
    "matthews_corrcoef",
    "pearson",
    "spearman",
    "strip_metric_prefix",
]
