"""VB-LoRA (peft `VBLoRAConfig`): LoRA factors assembled top-k from a shared vector bank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gpart.configs.adapters._bridge import peft_kwargs
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import AdapterConfig


@dataclass
class VBLoRAAdapterConfig(AdapterConfig):
    type: str = "vblora"
    r: int = 4
    num_vectors: int = 256
    # Must divide the in/out features of every target module.
    vector_length: int = 256
    topk: int = 2
    init_vector_bank_bound: float = 0.02
    init_logits_std: float = 0.1
    save_only_topk_weights: bool = False
    bias: Literal["none", "all", "vblora_only"] = "none"
    exclude_modules: list[str] | None = None
    layers_to_transform: list[int] | None = None
    layers_pattern: list[str] | None = None

    def validate(self) -> None:
        super().validate()
        if not 0 < self.topk <= self.num_vectors:
            raise ConfigError(
                f"adapter.topk: must be in [1, num_vectors={self.num_vectors}], got {self.topk}"
            )


def to_peft(
    cfg: VBLoRAAdapterConfig, *, task_type: Any = None, modules_to_save: list[str] | None = None
) -> Any:
    from peft import VBLoRAConfig

    return peft_kwargs(
        cfg,
        VBLoRAConfig,
        rename={"dropout": "vblora_dropout"},
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


register_adapter(
    "vblora",
    VBLoRAAdapterConfig,
    to_peft=to_peft,
    description="VB-LoRA: LoRA factors mixed top-k from a shared vector bank",
    order=50,
)
