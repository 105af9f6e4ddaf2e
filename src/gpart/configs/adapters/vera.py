"""VeRA (peft `VeraConfig`): frozen shared random projections, trained scaling vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gpart.configs.adapters._bridge import peft_kwargs
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, AdapterConfig


@dataclass
class VeraAdapterConfig(AdapterConfig):
    type: str = "vera"
    r: int = 256
    d_initial: float = 0.1
    # None: the run's --seed.
    projection_prng_key: int | None = field(default=None, metadata={FOLLOWS_SEED: True})
    # True (peft's default) stores the random projections with the adapter.
    save_projection: bool = True
    bias: Literal["none", "all", "vera_only"] = "none"
    layers_to_transform: list[int] | None = None
    layers_pattern: list[str] | None = None

    def validate(self) -> None:
        super().validate()
        if self.r <= 0:
            raise ConfigError(f"adapter.r: must be a positive integer, got {self.r}")


def to_peft(
    cfg: VeraAdapterConfig, *, task_type: Any = None, modules_to_save: list[str] | None = None
) -> Any:
    from peft import VeraConfig

    return peft_kwargs(
        cfg,
        VeraConfig,
        rename={"dropout": "vera_dropout"},
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


register_adapter(
    "vera",
    VeraAdapterConfig,
    to_peft=to_peft,
    description="VeRA: shared frozen random projections, trained scaling vectors",
    order=30,
)
