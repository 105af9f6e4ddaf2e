"""Linear probing: train the task head only; the backbone stays frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpart.configs.adapters._bridge import freeze_all_but, require_unused
from gpart.configs.registry import register_adapter
from gpart.configs.schema import AdapterConfig
from gpart.heads import is_head_param

if TYPE_CHECKING:
    import torch.nn as nn


@dataclass
class HeadAdapterConfig(AdapterConfig):
    type: str = "head"

    def validate(self) -> None:
        require_unused(self, target_modules=None)


def apply(model: nn.Module, cfg: HeadAdapterConfig, head_names: list[str]) -> None:
    freeze_all_but(model, lambda name: is_head_param(name, head_names))


register_adapter("head", HeadAdapterConfig, apply=apply, description="task head only", order=90)
