"""Uni-LoRA (peft `UniLoraConfig`): LoRA factors projected from one vector of length `d`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gpart.configs.adapters._bridge import peft_kwargs
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, AdapterConfig


@dataclass
class UniLoraAdapterConfig(AdapterConfig):
    """`d` and `init_bound` use GPart's names for the same ideas (length and init of theta)."""

    type: str = "unilora"
    r: int = 4
    # peft: theta_d_length (default 256).
    d: int = 256
    # None: the run's --seed.
    proj_seed: int | None = field(default=None, metadata={FOLLOWS_SEED: True})
    # peft: init_theta_d_bound.
    init_bound: float = 0.02
    bias: Literal["none", "all", "unilora_only"] = "none"
    # False: indices are regenerated from proj_seed on load, like GPart's partition.
    save_indices: bool = False
    layers_to_transform: list[int] | None = None
    layers_pattern: list[str] | None = None

    def validate(self) -> None:
        super().validate()
        if self.r <= 0 or self.d <= 0:
            raise ConfigError(f"adapter.r / adapter.d: must be positive, got r={self.r} d={self.d}")


def to_peft(
    cfg: UniLoraAdapterConfig, *, task_type: Any = None, modules_to_save: list[str] | None = None
) -> Any:
    from peft import UniLoraConfig

    return peft_kwargs(
        cfg,
        UniLoraConfig,
        rename={
            "dropout": "unilora_dropout",
            "d": "theta_d_length",
            "init_bound": "init_theta_d_bound",
        },
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


register_adapter(
    "unilora",
    UniLoraAdapterConfig,
    to_peft=to_peft,
    description="Uni-LoRA: all LoRA factors projected from one vector of length d",
    order=20,
)
