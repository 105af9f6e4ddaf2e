"""Probes the runner tests attach to a training run: the loss of every training forward
pass (also used by the reference workers, which run without gpart), and an extra
`TrainerCallback` on every Trainer the runners build."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def record_training_losses(model: Any, losses: list[float]) -> Any:
    """Append the loss of each forward pass of `model` made in training mode to `losses`
    (evaluation passes are left out); returns `model`."""

    def hook(module, inputs, output):
        if module.training:
            losses.append(output.loss.item())

    model.register_forward_hook(hook)
    return model


def with_callback(build: Callable[..., Any], callback: Any) -> Callable[..., Any]:
    """`build` (``gpart.runners.core.build_trainer``) adding `callback` to each Trainer."""

    def built(*args: Any, **kwargs: Any) -> Any:
        trainer = build(*args, **kwargs)
        trainer.add_callback(callback)
        return trainer

    return built
