"""FourierFT (peft `FourierFTConfig`): train `n_frequency` spectral coefficients per layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gpart.configs.adapters._bridge import peft_kwargs, require_unused
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, AdapterConfig


@dataclass
class FourierFTAdapterConfig(AdapterConfig):
    type: str = "fourierft"
    n_frequency: int = 1000
    scaling: float = 150.0
    # None: the run's --seed (peft's own default is a fixed 777).
    random_loc_seed: int | None = field(default=None, metadata={FOLLOWS_SEED: True})
    bias: Literal["none", "all", "fourier_only"] = "none"
    init_weights: bool = False
    exclude_modules: list[str] | None = None
    layers_to_transform: list[int] | None = None
    layers_pattern: list[str] | None = None

    def validate(self) -> None:
        super().validate()
        # peft's FourierFT has no dropout; accepting one would silently ignore it.
        require_unused(self, dropout=0.0)
        if self.n_frequency <= 0:
            raise ConfigError(f"adapter.n_frequency: must be positive, got {self.n_frequency}")


def to_peft(
    cfg: FourierFTAdapterConfig, *, task_type: Any = None, modules_to_save: list[str] | None = None
) -> Any:
    from peft import FourierFTConfig

    return peft_kwargs(
        cfg,
        FourierFTConfig,
        rename={"dropout": None},
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


register_adapter(
    "fourierft",
    FourierFTAdapterConfig,
    to_peft=to_peft,
    description="FourierFT: n_frequency trained spectral coefficients per layer",
    order=40,
)
