"""Vision presets (ViT image classification). Adapter/task settings come with the runner."""

from __future__ import annotations

from gpart.configs.presets.base import DomainPresets, freeze

# ImageNet-21k checkpoints: the starting point PEFT papers fine-tune on CIFAR and friends.
PRESETS = DomainPresets(
    domain="vision",
    default_size="base",
    size=freeze(
        {
            "base": freeze({"model.base_model": "google/vit-base-patch16-224-in21k"}),
            "large": freeze({"model.base_model": "google/vit-large-patch16-224-in21k"}),
        }
    ),
    adapter=freeze({}),
    task=freeze({}),
)
