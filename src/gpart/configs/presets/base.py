"""The container of a domain's presets and the helper that makes preset data read-only.

Kept apart from the package ``__init__`` so the domain modules (`glue`, `math`, `vision`)
import it without importing the package that collects them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class DomainPresets:
    """Layers 2 to 4 of the resolution for one domain (see `gpart.configs.presets`)."""

    domain: str
    default_size: str
    size: Mapping[str, Mapping[str, Any]]
    adapter: Mapping[tuple[str, str], Mapping[str, Any]]
    task: Mapping[tuple[str, str, str], Mapping[str, Any]]

    def sizes(self) -> list[str]:
        return list(self.size)


def freeze(d: Mapping) -> MappingProxyType:
    """A read-only view, so code that tries to edit a preset in place fails loudly."""
    return MappingProxyType(dict(d))
