"""From an adapter config to a trainable model: peft bridging and parameter freezing.

`apply_adapter` is the one entry point the runners call; it handles peft methods (via
`to_peft_config` and `peft.get_peft_model`) and the non-peft ones (`bitfit`, `head`, `full`)
alike, and decides which modules form the task head (`head_module_names`).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any

from gpart.configs.adapters._bridge import peft_error
from gpart.configs.errors import ConfigError
from gpart.configs.registry import get_adapter
from gpart.configs.schema import AdapterConfig, ExperimentConfig, fill_seed_fields
from gpart.configs.tasks import get_domain
from gpart.heads import head_module_names

if TYPE_CHECKING:
    import torch.nn as nn
    from peft import PeftConfig


def _task_type(task_type: Any) -> Any:
    """peft `TaskType` from a name (``"SEQ_CLS"``), a member, or None."""
    if task_type is None:
        return None
    from peft import TaskType

    return task_type if isinstance(task_type, TaskType) else TaskType[str(task_type)]


def to_peft_config(
    adapter_cfg: AdapterConfig,
    *,
    seed: int,
    task_type: Any = None,
    modules_to_save: list[str] | None = None,
) -> PeftConfig:
    """The peft config (peft's own class, `GPartConfig` for gpart) for a peft adapter.

    Args:
        adapter_cfg: an `AdapterConfig` subclass instance of a peft adapter.
        seed: the run's seed; fills seed-following fields left at None (e.g. gpart's
            `proj_seed`, VeRA's `projection_prng_key`).
        task_type: peft `TaskType` or its name (``"SEQ_CLS"``), or None.
        modules_to_save: modules trained in full and saved with the adapter (the head).

    Raises `ConfigError` for a non-peft adapter or a value peft rejects.
    """
    spec = get_adapter(adapter_cfg.type)
    if not spec.is_peft:
        raise ConfigError(
            f"adapter {adapter_cfg.type!r} is not a peft method; use gpart.configs.apply_adapter"
        )
    cfg = copy.deepcopy(adapter_cfg)
    fill_seed_fields(cfg, seed)
    cfg.validate()
    return spec.to_peft(cfg, task_type=_task_type(task_type), modules_to_save=modules_to_save)


# `adapter.target_modules query-value` means the attention query and value projections
# under whatever names the model family gives them: transformers 5 calls them q_proj/v_proj
# in ViT and DINOv2 but query/value in BERT/RoBERTa, so one preset serves every backbone.
QUERY_VALUE = "query-value"
_QUERY_VALUE_NAMES = (("query", "value"), ("q_proj", "v_proj"), ("q", "v"), ("q_lin", "v_lin"))


def linear_leaf_names(model: nn.Module) -> list[str]:
    """The distinct last name components of the model's linear layers (for targets)."""
    from torch import nn as _nn
    from transformers.pytorch_utils import Conv1D

    return sorted(
        {
            n.rsplit(".", 1)[-1]
            for n, m in model.named_modules()
            if isinstance(m, _nn.Linear | Conv1D)
        }
    )


def query_value_names(model: nn.Module) -> tuple[str, str] | None:
    """The names `model`'s family gives its attention query and value projections."""
    leaves = set(linear_leaf_names(model))
    return next((pair for pair in _QUERY_VALUE_NAMES if set(pair) <= leaves), None)


def resolve_targets(model: nn.Module, adapter: AdapterConfig) -> AdapterConfig:
    """`adapter` with the symbolic target ``query-value`` replaced by `model`'s names."""
    if adapter.target_modules != [QUERY_VALUE]:
        return adapter
    pair = query_value_names(model)
    if pair is not None:
        return dataclasses.replace(adapter, target_modules=list(pair))
    leaves = linear_leaf_names(model)
    raise ConfigError(
        f"adapter.target_modules {QUERY_VALUE}: no query/value projections in "
        f"{type(model).__name__} (its linear layers: {', '.join(leaves) or 'none'}); "
        "name the modules, e.g. adapter.target_modules query,value"
    )


def apply_adapter(
    model: nn.Module,
    cfg: ExperimentConfig | AdapterConfig,
    *,
    seed: int | None = None,
    task_type: Any = None,
    head_names: list[str] | None = None,
) -> nn.Module:
    """Make `model` trainable as `cfg`'s adapter says; return the model to train.

    - peft adapters: returns ``peft.get_peft_model(model, to_peft_config(...))`` with the
      head in ``modules_to_save`` (so it is trained and saved with the adapter);
    - ``bitfit`` / ``head`` / ``full``: sets ``requires_grad`` in place, returns `model`.

    With an `ExperimentConfig`, `seed` and `task_type` come from it (its domain); with a
    bare `AdapterConfig` pass them (`seed` is required for seed-following fields).
    `head_names` defaults to `head_module_names(model, task_type)`.
    """
    if isinstance(cfg, ExperimentConfig):
        adapter = cfg.adapter
        seed = cfg.seed if seed is None else seed
        if task_type is None:
            task_type = get_domain(cfg.domain).peft_task_type
    else:
        adapter = cfg
    if head_names is None:
        head_names = head_module_names(model, task_type or "SEQ_CLS")
    spec = get_adapter(adapter.type)
    if spec.is_peft:
        if seed is None:
            raise ValueError("apply_adapter: pass seed= with a bare AdapterConfig")
        # GPart's peft registration needs nothing here: `gpart/__init__` registers it as
        # soon as peft is imported.
        from peft import get_peft_model

        adapter = resolve_targets(model, adapter)
        peft_cfg = to_peft_config(
            adapter, seed=seed, task_type=task_type, modules_to_save=list(head_names) or None
        )
        try:
            model = get_peft_model(model, peft_cfg)
        except ValueError as exc:
            # peft (and the GPart tuner) raise ValueError for config/model mismatches --
            # target modules not found, d larger than the adapted space: user mistakes.
            raise ConfigError(
                f"{peft_error(adapter, exc)} "
                f"[adapter.target_modules={adapter.target_modules}; the model's linear "
                f"layers: {', '.join(linear_leaf_names(model))}]"
            ) from None
    else:
        adapter.validate()
        spec.apply(model, adapter, list(head_names))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(
            f"adapter {adapter.type!r}: nothing to train in {type(model).__name__} "
            f"(head modules: {head_names or 'none'})"
        )
    return model
