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
GROUPING_CHOICES = ("random", "balanced")
ASSIGNMENT_CHOICES = ("stateless", "materialized")


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
    grouping: Literal["random", "balanced"] = field(
        default="random", metadata={"help": "'random' (i.i.d. hash) or 'balanced'."}
    )
    assignment: Literal["stateless", "materialized"] = field(
        default="stateless", metadata={"help": "'stateless' or 'materialized' (int32 ids)."}
    )
    fan_in_fan_out: bool = field(default=False)

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
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError(
                "layers_to_transform needs target_modules as a list, not a regex string."
            )
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("layers_pattern is only used together with layers_to_transform.")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GPartConfig.{name} must be one of {', '.join(choices)}; got {value!r}.")
