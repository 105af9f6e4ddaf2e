"""Math presets (MetaMathQA -> GSM8K / MATH). Adapter/task settings come with the runner.

Sizes name the 7B models Uni-LoRA-style math experiments fine-tune. The size layer forces
what a 7B model needs on one GPU whatever the adapter: bf16 and activation checkpointing.
"""

from __future__ import annotations

from gpart.configs.presets.base import DomainPresets, freeze

_SEVEN_B = {"training.precision": "bf16", "training.gradient_checkpointing": True}

PRESETS = DomainPresets(
    domain="math",
    default_size="mistral-7b",
    size=freeze(
        {
            "mistral-7b": freeze({"model.base_model": "mistralai/Mistral-7B-v0.1", **_SEVEN_B}),
            "gemma-7b": freeze({"model.base_model": "google/gemma-7b", **_SEVEN_B}),
        }
    ),
    adapter=freeze({}),
    task=freeze({}),
)
