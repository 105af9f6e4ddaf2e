"""LoRA (peft `LoraConfig`): low-rank update B A of rank `r`, scaled by lora_alpha / r."""

from __future__ import annotations

from peft import LoraConfig

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.registry import register_adapter
from gpart.configs.schema import adapter_section


class LoraAdapterConfig(
    adapter_section(
        "lora",
        LoraConfig,
        (
            "r",
            "lora_alpha",
            "lora_dropout",
            "bias",
            "use_rslora",
            "exclude_modules",
            "layers_to_transform",
            "layers_pattern",
        ),
    )
):
    """peft's `LoraConfig` fields."""


register_adapter(
    "lora",
    LoraAdapterConfig,
    to_peft=to_peft,
    description="LoRA: low-rank update of rank r",
    order=10,
)
