"""The adapter registry: one entry per adapter, filled by the modules of `configs/adapters/`.

Everything that enumerates adapters (``--adapter_type`` choices, presets validation,
parameter counts, result tables) asks this registry, so adding an adapter is one module in
`gpart/configs/adapters/` that calls `register_adapter` -- the package imports every module
in that folder, no list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpart.configs.errors import ConfigError, did_you_mean
from gpart.configs.schema import AdapterConfig, field_types

if TYPE_CHECKING:
    import torch.nn as nn
    from peft import PeftConfig

# (adapter config, *, seed, task_type, modules_to_save) -> peft config
ToPeft = Callable[..., "PeftConfig"]
# (model, adapter config, head module names) -> None; sets requires_grad in place
ApplyFn = Callable[["nn.Module", AdapterConfig, list[str]], None]


@dataclass(frozen=True)
class AdapterSpec:
    """A registered adapter.

    Exactly one of `to_peft` (a peft method: the bridge to peft's own config class) and
    `apply` (not a peft method: marks which parameters of the model train) is set.
    """

    name: str
    config_cls: type[AdapterConfig]
    to_peft: ToPeft | None = None
    apply: ApplyFn | None = None
    description: str = ""
    # Position in listings (choices, tables): the method first, baselines after.
    order: int = 100

    @property
    def is_peft(self) -> bool:
        return self.to_peft is not None


_REGISTRY: dict[str, AdapterSpec] = {}
_LOADED = False


def register_adapter(
    name: str,
    config_cls: type[AdapterConfig],
    *,
    to_peft: ToPeft | None = None,
    apply: ApplyFn | None = None,
    description: str = "",
    order: int = 100,
) -> AdapterSpec:
    """Register adapter `name`.

    Re-registering the same spec is a no-op (modules can be re-imported); a different spec
    under a taken name is an error, so two adapters can never silently shadow each other.

    Args:
        name: the registry name, chosen with ``--adapter_type``.
        config_cls: the adapter's `AdapterConfig` subclass; its default ``type`` must be
            `name`.
        to_peft: for a peft method, builds peft's config from the adapter config.
        apply: for any other method, sets ``requires_grad`` on the model in place.
        description: one line for help texts.
        order: position in listings (the method first, baselines after).

    Returns:
        The registered `AdapterSpec`.

    Raises:
        ValueError: not exactly one of `to_peft` and `apply`, a config class whose ``type``
            is not `name`, or `name` already taken by a different spec.
        TypeError: `config_cls` is not an `AdapterConfig` subclass.
    """
    if (to_peft is None) == (apply is None):
        raise ValueError(f"adapter {name!r}: give exactly one of to_peft= and apply=")
    if not (isinstance(config_cls, type) and issubclass(config_cls, AdapterConfig)):
        raise TypeError(f"adapter {name!r}: config_cls must subclass AdapterConfig")
    if config_cls().type != name:
        raise ValueError(
            f"adapter {name!r}: {config_cls.__name__}.type defaults to "
            f"{config_cls().type!r}; it must default to {name!r}"
        )
    spec = AdapterSpec(name, config_cls, to_peft, apply, description, order)
    old = _REGISTRY.get(name)
    if old is not None and old != spec:
        raise ValueError(f"adapter {name!r} is already registered by {old.config_cls.__module__}")
    _REGISTRY[name] = spec
    return spec


def _ensure_loaded() -> None:
    """Import every module of `gpart.configs.adapters` once, so each registers itself."""
    global _LOADED
    if _LOADED:
        return
    import gpart.configs.adapters as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    _LOADED = True


def adapter_names() -> list[str]:
    """Registered adapter names by their `order`, then name (stable for help and tables)."""
    _ensure_loaded()
    return sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n))


def get_adapter(name: str) -> AdapterSpec:
    """The spec of adapter `name`; `ConfigError` with the closest name for a typo."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"adapter type {name!r} is not registered{did_you_mean(name, _REGISTRY)}; "
            f"choices: {', '.join(adapter_names())}"
        ) from None


def peft_adapter_names() -> list[str]:
    return [n for n in adapter_names() if _REGISTRY[n].is_peft]


def adapter_fields(name: str) -> dict[str, Any]:
    """Field name -> annotation of adapter `name`'s config (for help and key validation)."""
    return field_types(get_adapter(name).config_cls)
