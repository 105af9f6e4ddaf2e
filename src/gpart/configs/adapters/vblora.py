"""VB-LoRA (peft `VBLoRAConfig`): LoRA factors assembled top-k from a shared vector bank."""

from __future__ import annotations

from peft import VBLoRAConfig

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.errors import ConfigError
from gpart.configs.registry import register_adapter
from gpart.configs.schema import adapter_section


class VBLoRAAdapterConfig(
    adapter_section(
        "vblora",
        VBLoRAConfig,
        (
            "r",
            "num_vectors",
            # Must divide the in/out features of every target module.
            "vector_length",
            "topk",
            "init_vector_bank_bound",
            "init_logits_std",
            "save_only_topk_weights",
            "vblora_dropout",
            "bias",
            "exclude_modules",
            "layers_to_transform",
            "layers_pattern",
        ),
    )
):
    """peft's `VBLoRAConfig` fields."""

    def validate(self) -> None:
        super().validate()
        # peft checks neither here nor at injection; torch.topk would fail at the first
        # forward pass.
        if not 0 < self.topk <= self.num_vectors:
            raise ConfigError(
                f"adapter.topk: must be in [1, num_vectors={self.num_vectors}], got {self.topk}"
            )


register_adapter(
    "vblora",
    VBLoRAAdapterConfig,
    to_peft=to_peft,
    description="VB-LoRA: LoRA factors mixed top-k from a shared vector bank",
    order=50,
)
