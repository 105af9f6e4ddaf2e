"""Full fine-tuning: every parameter of the model trains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpart.configs.adapters._bridge import freeze_all_but, require_unused
from gpart.configs.registry import register_adapter
from gpart.configs.schema import AdapterConfig

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class FullAdapterConfig(AdapterConfig):
    type: str = "full"

    def validate(self) -> None:
        require_unused(self, target_modules=None)


def apply(model: nn.Module, cfg: FullAdapterConfig, head_names: list[str]) -> None:
    freeze_all_but(model, lambda name: True)


register_adapter("full", FullAdapterConfig, apply=apply, description="full fine-tuning", order=95)
