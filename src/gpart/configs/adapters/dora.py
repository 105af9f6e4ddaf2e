"""DoRA: LoRA on the direction plus a trained magnitude vector (peft `LoraConfig(use_dora=True)`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpart.configs.adapters._bridge import peft_kwargs
from gpart.configs.adapters.lora import LORA_RENAME, LoraAdapterConfig
from gpart.configs.registry import register_adapter


@dataclass
class DoraAdapterConfig(LoraAdapterConfig):
    type: str = "dora"


def to_peft(
    cfg: DoraAdapterConfig, *, task_type: Any = None, modules_to_save: list[str] | None = None
) -> Any:
    from peft import LoraConfig

    return peft_kwargs(
        cfg,
        LoraConfig,
        rename=LORA_RENAME,
        task_type=task_type,
        modules_to_save=modules_to_save,
        use_dora=True,
    )


register_adapter(
    "dora",
    DoraAdapterConfig,
    to_peft=to_peft,
    description="DoRA: LoRA direction update plus a trained magnitude",
    order=11,
)
