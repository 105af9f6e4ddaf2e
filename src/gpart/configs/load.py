"""Rebuild an `ExperimentConfig` from the dict `ExperimentConfig.to_dict` saved.

Lives above the adapter registry (it asks the registry which `AdapterConfig` subclass the
saved ``adapter.type`` names), so that `gpart.configs.schema` imports neither the registry
nor the coercer: imports run errors -> coerce -> schema -> registry -> load.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from gpart.configs.coerce import coerce
from gpart.configs.errors import ConfigError
from gpart.configs.legacy import from_v1_adapter, v1_adapter_key
from gpart.configs.registry import get_adapter
from gpart.configs.schema import (
    REMOVED_SECTIONS,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TaskConfig,
    TrainingConfig,
    field_types,
)


def experiment_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Rebuild a config saved with `ExperimentConfig.to_dict`.

    The ``effective`` section is derived from the others, so it is accepted and ignored.
    Values are validated against the field annotations like command-line values.

    Args:
        data: the dict `to_dict` returned (e.g. the ``config`` of a run's config.json);
            not modified.

    Returns:
        A new `ExperimentConfig` equal to the one that was saved.

    Raises:
        ConfigError: an unknown key, an unregistered ``adapter.type`` or a value that does
            not match its field's annotation. Adapter keys of identity version 1 are read
            as today's (`gpart.configs.legacy`).
    """
    data = copy.deepcopy(data)
    # REMOVED_SECTIONS: older runs' config.json files still hold them; nothing reads them
    known = {f.name for f in dataclasses.fields(ExperimentConfig)} | {"effective"}
    known |= set(REMOVED_SECTIONS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config: unknown top-level keys {unknown}; valid: {sorted(known)}")
    # Runs named under identity version 1 saved the adapter keys as that version spelled them.
    adapter_type = (data.get("adapter") or {}).get("type", "")
    adapter_data = from_v1_adapter(adapter_type, data.get("adapter") or {})
    adapter_cls = get_adapter(adapter_type).config_cls
    sources = {}
    for key, label in (data.get("sources") or {}).items():
        section, _, name = key.partition(".")
        if section == "adapter":
            new = v1_adapter_key(adapter_type, name)
            if new is None:
                continue
            key = f"adapter.{new}"
        sources[key] = label
    return ExperimentConfig(
        domain=data.get("domain", "glue"),
        tasks=list(data.get("tasks", ["sst2"])),
        seed=int(data.get("seed", 42)),
        output_dir=data.get("output_dir", "logs"),
        model=_build(ModelConfig, data.get("model"), "model"),
        adapter=_build(adapter_cls, adapter_data, "adapter"),
        training=_build(TrainingConfig, data.get("training"), "training"),
        data=_build(DataConfig, data.get("data"), "data"),
        task=_build(TaskConfig, data.get("task"), "task"),
        per_task={
            name: _build(TaskConfig, tc, f"task.{name}")
            for name, tc in (data.get("per_task") or {}).items()
        },
        sources=sources,
    )


def _build(cls: type, data: dict[str, Any] | None, section: str) -> Any:
    """An instance of dataclass `cls` from `data`, each value coerced by its annotation.

    Args:
        cls: the section's dataclass.
        data: field name -> value; None or missing fields keep the defaults.
        section: the key prefix error messages name (``training``, ``task.rte``).

    Returns:
        The new `cls` instance.

    Raises:
        ConfigError: an unknown field or a value that does not match its annotation.
    """
    data = data or {}
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(f"{section}: unknown keys {unknown}; valid: {sorted(types_)}")
    return cls(**{k: coerce(v, types_[k], f"{section}.{k}") for k, v in data.items()})
