"""BitFit: train the bias terms (and the task head), freeze every weight matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpart.configs.adapters._bridge import freeze_all_but, is_head_param, require_unused
from gpart.configs.registry import register_adapter
from gpart.configs.schema import AdapterConfig

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class BitFitAdapterConfig(AdapterConfig):
    """`target_modules` None: every bias of the model (LayerNorm's included, as in BitFit);
    otherwise only biases of modules whose name ends with one of the given names."""

    type: str = "bitfit"

    def validate(self) -> None:
        super().validate()
        require_unused(self, dropout=0.0)


def apply(model: nn.Module, cfg: BitFitAdapterConfig, head_names: list[str]) -> None:
    targets = cfg.target_modules

    def keep(name: str) -> bool:
        if is_head_param(name, head_names):
            return True
        module, _, leaf = name.rpartition(".")
        if leaf != "bias":
            return False
        return targets is None or any(module == t or module.endswith("." + t) for t in targets)

    freeze_all_but(model, keep)


register_adapter(
    "bitfit",
    BitFitAdapterConfig,
    apply=apply,
    description="BitFit: biases and the task head",
    order=80,
)
