"""Probes the runner tests attach to a training run: the loss of every training forward
pass (`record_training_losses`, also used by the reference workers, which run without gpart,
so this module imports gpart only inside `record_run_losses`), the same for every model our
runners build (`record_run_losses`), and an extra `TrainerCallback` on every Trainer the
runners build (`with_callback`)."""

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


def record_run_losses(monkeypatch: Any) -> list[float]:
    """`record_training_losses` on every model ``gpart.runners.core`` adapts from now on (for
    the test's duration); returns the list the losses go to."""
    import gpart.runners.core as core

    losses: list[float] = []
    apply = core.apply_adapter
    monkeypatch.setattr(
        core, "apply_adapter", lambda *a, **k: record_training_losses(apply(*a, **k), losses)
    )
    return losses


def with_callback(build: Callable[..., Any], callback: Any) -> Callable[..., Any]:
    """`build` (``gpart.runners.core.build_trainer``) adding `callback` to each Trainer."""

    def built(*args: Any, **kwargs: Any) -> Any:
        trainer = build(*args, **kwargs)
        trainer.add_callback(callback)
        return trainer

    return built
