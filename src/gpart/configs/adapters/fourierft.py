"""FourierFT (peft `FourierFTConfig`): train `n_frequency` spectral coefficients per layer."""

from __future__ import annotations

from dataclasses import field

from peft import FourierFTConfig

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, adapter_section


class FourierFTAdapterConfig(
    adapter_section(
        "fourierft",
        FourierFTConfig,
        (
            "n_frequency",
            "scaling",
            "random_loc_seed",
            "bias",
            "init_weights",
            "exclude_modules",
            "layers_to_transform",
            "layers_pattern",
        ),
        # None: the run's --seed (peft's own default is a fixed 777).
        {"random_loc_seed": field(metadata={FOLLOWS_SEED: True})},
    )
):
    """peft's `FourierFTConfig` fields (it has no dropout)."""


register_adapter(
    "fourierft",
    FourierFTAdapterConfig,
    to_peft=to_peft,
    description="FourierFT: n_frequency trained spectral coefficients per layer",
    order=40,
)
