"""BitFit: train the bias terms (and the task head), freeze every weight matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpart.configs.adapters._bridge import freeze_all_but
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import AdapterConfig
from gpart.heads import is_head_param

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class BitFitAdapterConfig(AdapterConfig):
    """`target_modules` None: every bias of the model (LayerNorm's included, as in BitFit);
    otherwise only biases of modules whose name ends with one of the given names."""

    type: str = "bitfit"


def _is_target_bias(name: str, targets: list[str] | None) -> bool:
    module, _, leaf = name.rpartition(".")
    if leaf != "bias":
        return False
    return targets is None or any(module == t or module.endswith("." + t) for t in targets)


def apply(model: nn.Module, cfg: BitFitAdapterConfig, head_names: list[str]) -> None:
    targets = cfg.target_modules
    if targets is not None and not any(
        _is_target_bias(n, targets)
        for n, _ in model.named_parameters()
        if not is_head_param(n, head_names)
    ):
        # The head always trains, so a typo here would silently become a head-only run.
        with_bias = sorted(
            {
                n.rpartition(".")[0].rpartition(".")[2]
                for n, _ in model.named_parameters()
                if n.endswith(".bias") and not is_head_param(n, head_names)
            }
        )
        raise ConfigError(
            f"adapter.target_modules: {targets} match no module with a bias; module names "
            f"in this model: {', '.join(with_bias[:12])}"
        )
    freeze_all_but(model, lambda n: is_head_param(n, head_names) or _is_target_bias(n, targets))


register_adapter(
    "bitfit",
    BitFitAdapterConfig,
    apply=apply,
    description="BitFit: biases and the task head",
    order=80,
)
