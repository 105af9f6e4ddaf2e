"""Shared helpers for adapter modules: field-by-field bridging to peft configs and freezing."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gpart.configs.errors import ConfigError
from gpart.configs.schema import AdapterConfig

if TYPE_CHECKING:
    import torch.nn as nn


def peft_kwargs(
    cfg: AdapterConfig,
    peft_cls: type,
    *,
    rename: Mapping[str, str] = {},
    task_type: Any = None,
    modules_to_save: list[str] | None = None,
    **extra: Any,
) -> Any:
    """Build `peft_cls` from every field of `cfg` (``type`` aside), renaming per `rename`.

    Every adapter field must land on a field of the peft config: a field that peft does not
    know is a bug in the adapter module, caught here rather than silently dropped (what the
    user typed must be what runs).
    """
    peft_fields = {f.name for f in dataclasses.fields(peft_cls)}
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name == "type":
            continue
        target = rename.get(f.name, f.name)
        if target is None:  # explicitly not bridged (the module validated it)
            continue
        if target not in peft_fields:
            raise TypeError(
                f"{type(cfg).__name__}.{f.name} -> {peft_cls.__name__}.{target}: no such peft field"
            )
        kwargs[target] = getattr(cfg, f.name)
    targets = kwargs.get("target_modules")
    if targets == ["all-linear"]:
        # peft only recognises the string form; a list is how our CLI spells every value.
        kwargs["target_modules"] = "all-linear"
    kwargs.update(extra)
    kwargs["task_type"] = task_type
    kwargs["modules_to_save"] = list(modules_to_save) if modules_to_save else None
    try:
        return peft_cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"adapter ({cfg.type}): {exc}") from None


def require_unused(cfg: AdapterConfig, **defaults: Any) -> None:
    """Fail when a base field that this adapter cannot use was changed from its default."""
    for name, default in defaults.items():
        value = getattr(cfg, name)
        if value != default:
            raise ConfigError(
                f"adapter.{name}: adapter {cfg.type!r} does not use it (got {value!r}); "
                f"leave it at {default!r}"
            )


def freeze_all_but(model: nn.Module, keep) -> None:
    """Set ``requires_grad`` of each parameter to ``keep(name)``."""
    for name, param in model.named_parameters():
        param.requires_grad_(bool(keep(name)))
