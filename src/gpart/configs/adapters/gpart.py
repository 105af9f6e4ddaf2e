"""GPart: one trainable vector `theta` of length `d`; every adapted weight hashed to a group."""

from __future__ import annotations

from dataclasses import field

from gpart.configs.adapters._bridge import to_peft
from gpart.configs.registry import register_adapter
from gpart.configs.schema import FOLLOWS_SEED, IDENTITY_IF_CHANGED, adapter_section
from gpart.tuner.config import GPartConfig


class GPartAdapterConfig(
    adapter_section(
        "gpart",
        GPartConfig,
        (
            "d",
            "gpart_dropout",
            "isometric",
            "proj_seed",
            "init_bound",
            "bias",
            "grouping_strategy",
            "assignment_backend",
            "partition_scope",
            "projection_type",
            "exclude_modules",
            "layers_to_transform",
            "layers_pattern",
        ),
        {
            # 2**14: a round default for quick runs (GPartConfig requires d); the paper's
            # GLUE presets use 23,040.
            "d": field(default=16384),
            # None: the run's --seed, so seeds vary the partition as well as the data order.
            "proj_seed": field(metadata={FOLLOWS_SEED: True}),
            # The paper's ablations, added after run names were in use: at their defaults
            # they stay out of the name.
            "partition_scope": field(metadata={IDENTITY_IF_CHANGED: True}),
            "projection_type": field(metadata={IDENTITY_IF_CHANGED: True}),
        },
    )
):
    """`gpart.GPartConfig`'s fields, as the paper authors' code names them."""


register_adapter(
    "gpart",
    GPartAdapterConfig,
    to_peft=to_peft,
    description="GPart: one vector theta of length d, weights hashed into d groups",
    order=0,
)
