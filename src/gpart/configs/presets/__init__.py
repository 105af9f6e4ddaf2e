"""Presets: the published settings, one module per domain, in the command line's key syntax.

A domain's `DomainPresets` holds three of the five resolution layers
(see `gpart.configs.resolve`):

- ``adapter[(adapter, size)]``        layer 2: ``{"adapter.d": 23040, "training.lr": 5e-3}``
- ``task[(adapter, task, size)]``     layer 3: ``{"epochs": 80, "head_lr": 2e-3}``, applied as
                                      ``task.<task>.<field>`` (TaskConfig fields only)
- ``size[size]``                      layer 4: ``{"model.base_model": "FacebookAI/roberta-base"}``

Presets are read-only data: resolution deep-copies every value it takes from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gpart.configs.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class DomainPresets:
    domain: str
    default_size: str
    size: Mapping[str, Mapping[str, Any]]
    adapter: Mapping[tuple[str, str], Mapping[str, Any]]
    task: Mapping[tuple[str, str, str], Mapping[str, Any]]

    def sizes(self) -> list[str]:
        return list(self.size)


def freeze(d: Mapping) -> MappingProxyType:
    """A read-only view, so code that tries to edit a preset in place fails loudly."""
    return MappingProxyType(dict(d))


def get_presets(domain: str) -> DomainPresets:
    from gpart.configs.presets import glue, math, vision

    presets = {p.domain: p for p in (glue.PRESETS, vision.PRESETS, math.PRESETS)}
    try:
        return presets[domain]
    except KeyError:
        raise ConfigError(
            f"domain {domain!r} has no presets{did_you_mean(domain, presets)}; "
            f"choices: {', '.join(presets)}"
        ) from None
