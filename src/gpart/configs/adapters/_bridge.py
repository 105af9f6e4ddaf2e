"""Shared helpers for adapter modules: building peft's config from a section, and freezing."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from gpart.configs.errors import ConfigError
from gpart.configs.schema import AdapterConfig

if TYPE_CHECKING:
    import torch.nn as nn


def to_peft(
    cfg: AdapterConfig,
    *,
    task_type: Any = None,
    modules_to_save: list[str] | None = None,
    **fixed: Any,
) -> Any:
    """peft's config (`cfg.peft_config`) from every key of `cfg` (``type`` aside), plus `fixed`.

    The keys are the peft config's own fields (`gpart.configs.schema.adapter_section`), so
    they are passed as they are, and peft's constructor is the validation: what it rejects
    becomes a `ConfigError` naming the key (`peft_error`).
    """
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "type"}
    if kwargs.get("target_modules") == ["all-linear"]:
        # peft only recognises the string form; a list is how our CLI spells every value.
        kwargs["target_modules"] = "all-linear"
    kwargs.update(fixed)
    kwargs["task_type"] = task_type
    kwargs["modules_to_save"] = list(modules_to_save) if modules_to_save else None
    try:
        return cfg.peft_config(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(peft_error(cfg, exc)) from None


def peft_error(cfg: AdapterConfig, exc: Exception) -> str:
    """`exc` (raised by peft for `cfg`) as one line led by the key it is about.

    peft's messages name its fields, which are the section's keys: the first key the
    message names leads it (``adapter.gpart_dropout: ...``); none, the adapter does.
    """
    text = " ".join(str(exc).split())
    named = [
        (m.start(), f.name)
        for f in dataclasses.fields(cfg)
        if f.name != "type" and (m := re.search(rf"\b{re.escape(f.name)}\b", text))
    ]
    return f"adapter.{min(named)[1]}: {text}" if named else f"adapter ({cfg.type}): {text}"


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
