"""VeRA (peft `VeraConfig`): frozen shared random projections, trained scaling vectors."""

from __future__ import annotations

import warnings
from dataclasses import field
from typing import Any

from peft import VeraConfig

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, adapter_section


class VeraAdapterConfig(
    adapter_section(
        "vera",
        VeraConfig,
        (
            "r",
            "d_initial",
            "projection_prng_key",
            # True (peft's default) stores the random projections with the adapter.
            "save_projection",
            "vera_dropout",
            "bias",
            "layers_to_transform",
            "layers_pattern",
        ),
        # None: the run's --seed.
        {"projection_prng_key": field(metadata={FOLLOWS_SEED: True})},
    )
):
    """peft's `VeraConfig` fields."""


def vera_to_peft(cfg: VeraAdapterConfig, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        # save_projection False is a deliberate choice (the adapter file then holds only the
        # vectors): the projections are regenerated from projection_prng_key, which the run
        # records. peft's reminder about it would break the CLI's one-line output.
        if not cfg.save_projection:
            warnings.filterwarnings("ignore", message="Specified to not save vera_A and vera_B")
        return to_peft(cfg, **kwargs)


register_adapter(
    "vera",
    VeraAdapterConfig,
    to_peft=vera_to_peft,
    description="VeRA: shared frozen random projections, trained scaling vectors",
    order=30,
)
