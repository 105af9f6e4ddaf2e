"""GPart: one trainable vector `theta` of length `d`; every adapted weight hashed to a group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gpart.configs.adapters._bridge import peft_kwargs
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, IDENTITY_IF_CHANGED, AdapterConfig


@dataclass
class GPartAdapterConfig(AdapterConfig):
    """Mirrors `gpart.GPartConfig`. Renamed on the way: ``dropout`` -> ``gpart_dropout``,
    ``grouping`` -> ``grouping_strategy``, ``assignment`` -> ``assignment_backend``,
    ``projection`` -> ``projection_type`` (the override keys predate the reference's names
    and are in every run name's hash, so they stay)."""

    type: str = "gpart"
    # 2**14: a round default for quick runs; the paper's GLUE presets use 23,040.
    d: int = 16384
    isometric: bool = True
    # None: the run's --seed, so seeds vary the partition as well as the data order.
    proj_seed: int | None = field(default=None, metadata={FOLLOWS_SEED: True})
    init_bound: float = 0.0
    bias: Literal["none", "all", "gpart_only"] = "none"
    grouping: Literal["random", "balanced", "signed_magnitude"] = "random"
    assignment: Literal["stateless", "materialized"] = "stateless"
    # The paper's ablations (see GPartConfig): one space per transformer block, and the
    # dense Fastfood projection as the structured random baseline.
    # Added after run names were in use: at their defaults they leave names unchanged.
    partition_scope: Literal["global", "transformer_block"] = field(
        default="global", metadata={IDENTITY_IF_CHANGED: True}
    )
    projection: Literal["partition", "fastfood"] = field(
        default="partition", metadata={IDENTITY_IF_CHANGED: True}
    )
    exclude_modules: list[str] | None = None
    layers_to_transform: list[int] | None = None
    layers_pattern: list[str] | None = None

    def validate(self) -> None:
        super().validate()
        if self.d <= 0:
            raise ConfigError(f"adapter.d: must be a positive integer, got {self.d}")
        if self.init_bound < 0:
            raise ConfigError(f"adapter.init_bound: must be >= 0, got {self.init_bound}")


def to_peft(
    cfg: GPartAdapterConfig, *, task_type: Any = None, modules_to_save: list[str] | None = None
) -> Any:
    from gpart import GPartConfig

    return peft_kwargs(
        cfg,
        GPartConfig,
        # This project's override names -> the reference implementation's field names.
        rename={
            "dropout": "gpart_dropout",
            "grouping": "grouping_strategy",
            "assignment": "assignment_backend",
            "projection": "projection_type",
        },
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


register_adapter(
    "gpart",
    GPartAdapterConfig,
    to_peft=to_peft,
    description="GPart: one vector theta of length d, weights hashed into d groups",
    order=0,
)
