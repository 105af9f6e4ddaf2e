"""Uni-LoRA (peft `UniLoraConfig`): LoRA factors projected from one vector of length
`theta_d_length`."""

from __future__ import annotations

from dataclasses import field

from peft import UniLoraConfig

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, adapter_section


class UniLoraAdapterConfig(
    adapter_section(
        "unilora",
        UniLoraConfig,
        (
            "r",
            "theta_d_length",
            "proj_seed",
            "init_theta_d_bound",
            "unilora_dropout",
            "bias",
            # False (peft's default): indices are regenerated from proj_seed on load, like
            # GPart's partition.
            "save_indices",
            "layers_to_transform",
            "layers_pattern",
        ),
        # None: the run's --seed.
        {"proj_seed": field(metadata={FOLLOWS_SEED: True})},
    )
):
    """peft's `UniLoraConfig` fields."""


register_adapter(
    "unilora",
    UniLoraAdapterConfig,
    to_peft=to_peft,
    description="Uni-LoRA: all LoRA factors projected from one vector of length theta_d_length",
    order=20,
)
