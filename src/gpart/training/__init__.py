"""Training: `Trainer` with adapter / head parameter groups and exact warmup."""

from gpart.training.trainer import (
    GroupedTrainer,
    build_param_groups,
    count_training_steps,
    warmup_steps_from_ratio,
)

__all__ = [
    "GroupedTrainer",
    "build_param_groups",
    "count_training_steps",
    "warmup_steps_from_ratio",
]
