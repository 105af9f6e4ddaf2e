"""LoRA (peft `LoraConfig`): low-rank update B A of rank `r`, scaled by alpha / r."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gpart.configs.adapters._bridge import peft_kwargs
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import AdapterConfig


@dataclass
class LoraAdapterConfig(AdapterConfig):
    type: str = "lora"
    r: int = 8
    alpha: int = 8
    bias: Literal["none", "all", "lora_only"] = "none"
    use_rslora: bool = False
    exclude_modules: list[str] | None = None
    layers_to_transform: list[int] | None = None
    layers_pattern: list[str] | None = None

    def validate(self) -> None:
        super().validate()
        if self.r <= 0:
            raise ConfigError(f"adapter.r: must be a positive integer, got {self.r}")


# Our field names -> peft's.
LORA_RENAME = {"dropout": "lora_dropout", "alpha": "lora_alpha"}


def lora_to_peft(
    cfg: LoraAdapterConfig,
    *,
    task_type: Any = None,
    modules_to_save: list[str] | None = None,
    use_dora: bool = False,
) -> Any:
    """peft's `LoraConfig` for `cfg`; `dora` is the same with ``use_dora=True``."""
    from peft import LoraConfig

    return peft_kwargs(
        cfg,
        LoraConfig,
        rename=LORA_RENAME,
        task_type=task_type,
        modules_to_save=modules_to_save,
        use_dora=use_dora,
    )


register_adapter(
    "lora",
    LoraAdapterConfig,
    to_peft=lora_to_peft,
    description="LoRA: low-rank update of rank r",
    order=10,
)
