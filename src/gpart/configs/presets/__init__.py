"""Presets: the published settings, one module per domain, in the command line's key syntax.

A domain's `DomainPresets` holds three of the five resolution layers
(see `gpart.configs.resolve`):

- ``adapter[(adapter, size)]``        layer 2: ``{"adapter.d": 23040, "training.lr": 5e-3}``
- ``task[(adapter, task, size)]``     layer 3: ``{"epochs": 80, "head_lr": 2e-3}``, applied as
                                      ``task.<task>.<field>`` (TaskConfig fields only)
- ``size[size]``                      layer 4: ``{"model.base_model": "FacebookAI/roberta-base"}``

Presets are read-only data: resolution deep-copies every value it takes from them.
`DomainPresets` and `freeze` live in `presets/base.py`, which the domain modules import;
this package re-exports them and collects the domains in `get_presets`.
"""

from __future__ import annotations

from gpart.configs.errors import ConfigError, did_you_mean
from gpart.configs.presets import glue, math, vision
from gpart.configs.presets.base import DomainPresets, freeze

__all__ = ["DomainPresets", "freeze", "get_presets"]


def get_presets(domain: str) -> DomainPresets:
    """The presets of `domain`.

    Args:
        domain: a domain name (``glue``, ``vision``, ``math``).

    Returns:
        The domain's `DomainPresets`.

    Raises:
        ConfigError: `domain` has no presets; the message names the closest domain.
    """
    presets = {p.domain: p for p in (glue.PRESETS, vision.PRESETS, math.PRESETS)}
    try:
        return presets[domain]
    except KeyError:
        raise ConfigError(
            f"domain {domain!r} has no presets{did_you_mean(domain, presets)}; "
            f"choices: {', '.join(presets)}"
        ) from None
