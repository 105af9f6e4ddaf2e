"""VeRA (peft `VeraConfig`): frozen shared random projections, trained scaling vectors."""

from __future__ import annotations

import warnings
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

    with warnings.catch_warnings():
        # save_projection False is a deliberate choice (the GLUE preset, as the paper saves
        # only the vectors): the projections are regenerated from projection_prng_key, which
        # the run records. peft's reminder about it would break the CLI's one-line output.
        if not cfg.save_projection:
            warnings.filterwarnings("ignore", message="Specified to not save vera_A and vera_B")
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
