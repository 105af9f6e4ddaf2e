"""DoRA: LoRA on the direction plus a trained magnitude vector (peft `LoraConfig(use_dora=True)`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.adapters.lora import LoraAdapterConfig
from gpart.configs.registry import register_adapter


@dataclass
class DoraAdapterConfig(LoraAdapterConfig):
    type: str = "dora"


register_adapter(
    "dora",
    DoraAdapterConfig,
    # LoRA's section with peft's use_dora switch on.
    to_peft=functools.partial(to_peft, use_dora=True),
    description="DoRA: LoRA direction update plus a trained magnitude",
    order=11,
)
