"""Training: `Trainer` setup (parameter groups, schedules) and GLUE metrics."""

from gpart.training.metrics import glue_metrics, make_compute_metrics, primary_metric
from gpart.training.trainer import (
    GroupedTrainer,
    build_param_groups,
    count_trainable_parameters,
    count_training_steps,
    warmup_steps_from_ratio,
)

__all__ = [
    "GroupedTrainer",
    "build_param_groups",
    "count_trainable_parameters",
    "count_training_steps",
    "glue_metrics",
    "make_compute_metrics",
    "primary_metric",
    "warmup_steps_from_ratio",
]
