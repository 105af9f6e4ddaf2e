"""`GPartConfig`: the peft configuration of a GPart adapter.

A GPart adapter is fully described by this config plus one vector `theta` of length `d`:
the partition of the adapted weights into `d` groups is a pure function of
(`proj_seed`, `grouping`, the adapted modules' shapes), so it is recomputed, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig

from gpart.tuner.peft_type import GPART_PEFT_TYPE

BIAS_CHOICES = ("none", "all", "gpart_only")
GROUPING_CHOICES = ("random", "balanced", "signed_magnitude")
ASSIGNMENT_CHOICES = ("stateless", "materialized")
SCOPE_CHOICES = ("global", "transformer_block")
PROJECTION_CHOICES = ("partition", "fastfood")


@dataclass
class GPartConfig(PeftConfig):
    """Configuration of a GPart adapter.

    Args:
        d: Number of groups, i.e. the length of the trainable vector `theta`. Required.
        target_modules: Module names (list: exact name or suffix match), a regex string, or
            ``"all-linear"``. Default: the model family's attention query/value projections.
        exclude_modules: Module names or regex to leave untouched.
        gpart_dropout: Probability of masking entries of the weight update `dW` (not of the
            activations) during training.
        isometric: Scale group `j` by `1/sqrt(n_j)` so that `||dW|| = ||theta||`.
        proj_seed: Seed of the hash that assigns every adapted entry to a group.
        init_bound: `theta` starts uniform in `[-init_bound, init_bound]`; 0 starts exactly
            at the base model (the gradient of `theta` is still nonzero).
        bias: ``"none"``; ``"gpart_only"`` adds the biases of the adapted modules to the
            partitioned space (their update comes from `theta`); ``"all"`` additionally trains
            every other bias of the model directly (they are saved with the adapter).
        modules_to_save: Modules trained in full and saved, e.g. a classifier head.
        layers_to_transform / layers_pattern: Restrict adaptation to some layer indices.
        grouping: ``"random"``: i.i.d. hash of the position; ``"balanced"``: a keyed
            bijection of the positions followed by ``mod d``, so group sizes differ by at most
            one. Both are stateless functions of the seed.
        assignment: ``"stateless"``: group ids recomputed from the hash on every use, no
            per-weight memory; ``"materialized"``: the same ids cached as int32 per layer
            (4 bytes per adapted weight, less compute).
        fan_in_fan_out: Set automatically for transformers' ``Conv1D`` (GPT-2); only the
            storage order of the weight depends on it.
        partition_scope: ``"global"``: one adapted space over every target module;
            ``"transformer_block"``: each numbered child of the model's block container
            (``layers``, ``layer``, ``h``, ``block``, ``blocks``, or ``layers_pattern``) is its
            own space with its own slice of `theta` (`d` split evenly, the first `d mod B`
            blocks one larger), its own groups, scales and seed. Adapted modules outside
            every block form one last extra block.
        projection: ``"partition"``: the GPart map (one group per entry); ``"fastfood"``: the
            dense structured random baseline `H G Pi H B` (Fastfood), scaled so that
            `E[P^T P] = I`; with ``isometric=False`` a fixed anisotropic gain (4:1 spread)
            multiplies `theta`. Fastfood has no groups: `grouping` stays ``"random"`` and
            `assignment` ``"stateless"``.

    ``grouping="signed_magnitude"`` sorts the entries of each sign of the *pretrained*
    weights by magnitude and cuts them into equal-count bins; its ids depend on the base
    weights, so it needs ``assignment="materialized"`` (computed at injection, never saved)
    and a reload reproduces it exactly only on the same base weights.
    """

    d: int | None = field(default=None, metadata={"help": "Length of theta (number of groups)."})
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Module names, a regex, or 'all-linear'. Default: query/value projections."
        },
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names or regex to exclude."}
    )
    gpart_dropout: float = field(default=0.0, metadata={"help": "Dropout on the entries of dW."})
    isometric: bool = field(default=True, metadata={"help": "Scale group j by 1/sqrt(n_j)."})
    proj_seed: int = field(default=42, metadata={"help": "Seed of the partition hash."})
    init_bound: float = field(default=0.0, metadata={"help": "theta ~ U(-b, b); 0 = base model."})
    bias: Literal["none", "all", "gpart_only"] = field(
        default="none", metadata={"help": "'none', 'all' or 'gpart_only'."}
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained in full and saved (e.g. a head)."}
    )
    layers_to_transform: list[int] | int | None = field(default=None)
    layers_pattern: list[str] | str | None = field(default=None)
    grouping: Literal["random", "balanced", "signed_magnitude"] = field(
        default="random",
        metadata={"help": "'random' (i.i.d. hash), 'balanced' or 'signed_magnitude'."},
    )
    assignment: Literal["stateless", "materialized"] = field(
        default="stateless", metadata={"help": "'stateless' or 'materialized' (int32 ids)."}
    )
    fan_in_fan_out: bool = field(default=False)
    partition_scope: Literal["global", "transformer_block"] = field(
        default="global", metadata={"help": "'global' or 'transformer_block'."}
    )
    projection: Literal["partition", "fastfood"] = field(
        default="partition", metadata={"help": "'partition' (GPart) or 'fastfood'."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = GPART_PEFT_TYPE
        if isinstance(self.target_modules, (list, tuple, set)):
            self.target_modules = list(self.target_modules)
        if isinstance(self.exclude_modules, (list, tuple, set)):
            self.exclude_modules = list(self.exclude_modules)
        if self.d is None:
            raise ValueError(
                "GPartConfig needs `d`, the length of theta: e.g. GPartConfig(d=16384)."
            )
        if isinstance(self.d, bool) or not isinstance(self.d, int) or self.d <= 0:
            raise ValueError(f"GPartConfig.d must be a positive integer, got {self.d!r}.")
        for name in ("isometric", "fan_in_fan_out"):
            if not isinstance(getattr(self, name), bool):
                # "no" or "false" would otherwise count as True.
                raise ValueError(
                    f"GPartConfig.{name} must be True or False, got {getattr(self, name)!r}."
                )
        if isinstance(self.proj_seed, bool) or not isinstance(self.proj_seed, int):
            raise ValueError(f"GPartConfig.proj_seed must be an integer, got {self.proj_seed!r}.")
        if not 0.0 <= self.gpart_dropout < 1.0:
            raise ValueError(f"gpart_dropout must be in [0, 1), got {self.gpart_dropout!r}.")
        if self.init_bound < 0:
            raise ValueError(f"init_bound must be >= 0, got {self.init_bound!r}.")
        _check_choice("bias", self.bias, BIAS_CHOICES)
        _check_choice("grouping", self.grouping, GROUPING_CHOICES)
        _check_choice("assignment", self.assignment, ASSIGNMENT_CHOICES)
        _check_choice("partition_scope", self.partition_scope, SCOPE_CHOICES)
        _check_choice("projection", self.projection, PROJECTION_CHOICES)
        _check_combination(self.projection, self.grouping, self.assignment)
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError(
                "layers_to_transform needs target_modules as a list, not a regex string."
            )
        if (
            self.layers_pattern
            and self.layers_to_transform is None
            and self.partition_scope != "transformer_block"
        ):
            raise ValueError(
                "layers_pattern is only used together with layers_to_transform or "
                "partition_scope='transformer_block'."
            )


def _check_combination(projection: str, grouping: str, assignment: str) -> None:
    """Reject option combinations that have no meaning, naming the valid ones."""
    if projection == "fastfood":
        # Fastfood is dense: no groups to draw, no ids to cache.
        if grouping != "random":
            raise ValueError(
                f"GPartConfig: projection='fastfood' has no groups, so grouping must stay at "
                f"its default 'random' (valid with fastfood: random); got {grouping!r}. "
                "Groupings random, balanced and signed_magnitude need projection='partition'."
            )
        if assignment != "stateless":
            raise ValueError(
                f"GPartConfig: projection='fastfood' has no group ids to cache, so assignment "
                f"must be 'stateless' (valid with fastfood: stateless); got {assignment!r}."
            )
    if grouping == "signed_magnitude" and assignment != "materialized":
        raise ValueError(
            "GPartConfig: grouping='signed_magnitude' depends on the base weights, so its ids "
            "are computed at injection and cached: it needs assignment='materialized' (valid "
            f"with signed_magnitude: materialized); got {assignment!r}. Groupings that work "
            "with assignment='stateless': random, balanced."
        )


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GPartConfig.{name} must be one of {', '.join(choices)}; got {value!r}.")
