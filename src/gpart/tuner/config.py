"""`GPartConfig`: the peft configuration of a GPart adapter.

A GPart adapter is fully described by this config plus one vector `theta` of length `d`:
the partition of the adapted weights into `d` groups is a pure function of
(`proj_seed`, `grouping_strategy`, the adapted modules' shapes), so it is recomputed, never
stored.

Field names and meanings are those of the paper authors' code (SamsungLabs/GPart, its
``peft/tuners/gpart/config.py``), so that an `adapter_config.json` means the same in both:
its adapters load here (`GPartConfig.check_kwargs` recognises them by their fields) and
ours there. `scheme_version` records which definitions an adapter's ids follow; adapters
saved by this project before it adopted the reference's definitions (fields ``grouping``,
``assignment``, ``projection``, no ``scheme_version``) load as scheme 1, to their own weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig

from gpart.tuner.peft_type import GPART_PEFT_TYPE
from gpart.tuner.schemes import SCHEME_CURRENT, SCHEMES, follows_reference

BIAS_CHOICES = ("none", "all", "gpart_only")
GROUPING_CHOICES = ("random", "balanced", "signed_magnitude")
ASSIGNMENT_CHOICES = ("stateless", "materialized")
SCOPE_CHOICES = ("global", "transformer_block")
PROJECTION_CHOICES = ("partition", "fastfood")
# Field names this project used before it took the reference's (scheme 1 adapters).
LEGACY_FIELDS = {
    "grouping": "grouping_strategy",
    "assignment": "assignment_backend",
    "projection": "projection_type",
}
# The reference's deprecated spellings of its assignment backends (its config.py).
_DEPRECATED_BACKENDS = {"legacy_streaming": "materialized", "implicit_stateless_v1": "stateless"}


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
        layers_to_transform: Restrict adaptation to some layer indices, as in peft.
        layers_pattern: The name of the layer list that ``layers_to_transform`` indexes.
        grouping_strategy: ``"random"``: i.i.d. uniform groups; ``"balanced"`` (this
            project's extension): group sizes differ by at most one; under scheme 3 every
            window of `d` consecutive positions holds each group once (a keyed affine
            bijection per window), under schemes 1 and 2 a keyed permutation of the
            positions followed by ``mod d``; ``"signed_magnitude"`` (see below).
        assignment_backend: ``"stateless"``: group ids recomputed from the hash of the
            position on every use, no per-weight memory. ``"materialized"``: ids stored as
            int32 per layer (4 bytes per adapted weight, less compute); for ``random`` it is
            the reference's *other* partition, a `torch.randint` stream seeded with
            `proj_seed` drawn layer by layer, not a cache of the stateless ids (under
            ``scheme_version=1`` it was that cache).
        fan_in_fan_out: Set automatically for transformers' ``Conv1D`` (GPT-2); only the
            storage order of the weight depends on it.
        partition_scope: ``"global"``: one adapted space over every target module;
            ``"transformer_block"``: each numbered child of the model's block container
            (``layers``, ``layer``, ``h``, ``block``, ``blocks``, or ``layers_pattern``) is its
            own space with its own slice of `theta` (`d` split evenly, the first `d mod B`
            blocks one larger, blocks in natural order), its own groups and scales, and the
            seed `proj_seed + ordinal`. A targeted module outside every block is an error
            (under ``scheme_version=1`` such modules formed one extra block, last).
        projection_type: ``"partition"``: the GPart map (one group per entry);
            ``"fastfood"``: the dense structured random baseline `H G Pi H B` (Fastfood),
            scaled by `1/sqrt(D L)` so that `E[P^T P] = I`; with ``isometric=False`` fixed
            anisotropic gains (4:1 spread, RMS one) multiply `theta`. Fastfood has no groups:
            `grouping_strategy` stays ``"random"``.
        scheme_version: Which definitions the ids, scales, block seeds and Fastfood factors
            follow: 3 (default) and 2, the reference implementation's (they differ only in
            this project's own ``balanced`` grouping: stratified under 3, a Feistel
            permutation under 2); 1, this project's earlier ones (set when an adapter saved
            by an earlier version is loaded). See
            `gpart.tuner.schemes` and docs/compatibility.md ("Compatibility with the
            reference implementation").

    ``grouping_strategy="signed_magnitude"`` sorts the entries of each sign of the
    *pretrained* weights by magnitude and cuts them into equal-count bins; its ids depend on
    the base weights, so it needs ``assignment_backend="materialized"`` (computed at
    injection, never saved) and a reload reproduces it exactly only on the same base weights.
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
    grouping_strategy: Literal["random", "balanced", "signed_magnitude"] = field(
        default="random",
        metadata={"help": "'random' (i.i.d.), 'balanced' or 'signed_magnitude'."},
    )
    assignment_backend: Literal["stateless", "materialized"] = field(
        default="stateless",
        metadata={"help": "'stateless' (hashed ids) or 'materialized' (stored int32 ids)."},
    )
    fan_in_fan_out: bool = field(default=False)
    partition_scope: Literal["global", "transformer_block"] = field(
        default="global", metadata={"help": "'global' or 'transformer_block'."}
    )
    projection_type: Literal["partition", "fastfood"] = field(
        default="partition", metadata={"help": "'partition' (GPart) or 'fastfood'."}
    )
    scheme_version: int = field(
        default=SCHEME_CURRENT,
        metadata={
            "help": "3: the reference's definitions, stratified 'balanced'; 2: Feistel "
            "'balanced'; 1: earlier gpart."
        },
    )

    @classmethod
    def check_kwargs(cls, **kwargs):
        """Read a saved `adapter_config.json` (peft calls this in `from_pretrained`).

        The reference's files and ours name the same fields; a file of this project from
        before (``grouping``/``assignment``/``projection``, no ``scheme_version``) is scheme
        1 under the new names. A field this class does not have is an error naming it, not
        a warning: dropping an option would load other weights silently.
        """
        kwargs = dict(super().check_kwargs(**kwargs))
        legacy = [old for old in LEGACY_FIELDS if old in kwargs]
        if legacy:
            clash = [LEGACY_FIELDS[old] for old in legacy if LEGACY_FIELDS[old] in kwargs]
            if clash:
                raise ValueError(
                    f"GPart adapter config names both {legacy} and {clash}: the same options "
                    "under this project's old and the reference's field names; keep one."
                )
            for old in legacy:
                kwargs[LEGACY_FIELDS[old]] = kwargs.pop(old)
            kwargs.setdefault("scheme_version", 1)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(
                f"GPart adapter config has field(s) {unknown} that this version of gpart does "
                f"not implement, so the adapter cannot be loaded to the weights it was saved "
                f"with. Known fields: {', '.join(sorted(known))}."
            )
        backend = kwargs.get("assignment_backend")
        if backend in _DEPRECATED_BACKENDS:
            kwargs["assignment_backend"] = _DEPRECATED_BACKENDS[backend]
        return kwargs

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
        if self.scheme_version not in SCHEMES or isinstance(self.scheme_version, bool):
            raise ValueError(
                f"GPartConfig.scheme_version must be one of {SCHEMES} (3 and 2: the reference "
                f"implementation's definitions, 1: earlier gpart); got {self.scheme_version!r}."
            )
        _check_choice("grouping_strategy", self.grouping_strategy, GROUPING_CHOICES)
        _check_choice("assignment_backend", self.assignment_backend, ASSIGNMENT_CHOICES)
        _check_choice("partition_scope", self.partition_scope, SCOPE_CHOICES)
        _check_choice("projection_type", self.projection_type, PROJECTION_CHOICES)
        _check_combination(self.projection_type, self.grouping_strategy, self.assignment_backend)
        if (
            follows_reference(self.scheme_version)
            and self.projection_type == "fastfood"
            and self.partition_scope != "global"
        ):
            # The reference refuses it too; scheme 1 adapters may have it and still load.
            raise ValueError(
                "GPartConfig: partition_scope='transformer_block' needs "
                "projection_type='partition' (valid with fastfood: global)."
            )
        if (
            follows_reference(self.scheme_version)
            and self.projection_type == "fastfood"
            and not self.isometric
            and self.d < 2
        ):
            raise ValueError(
                "GPartConfig: projection_type='fastfood' with isometric=False needs d >= 2 "
                f"(its gains have a 4:1 spread); got d={self.d}."
            )
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
        # Fastfood is dense: no groups to draw, no ids to store.
        if grouping != "random":
            raise ValueError(
                "GPartConfig: projection_type='fastfood' has no groups, so grouping_strategy "
                "must stay at its default 'random' (valid with fastfood: random); got "
                f"{grouping!r}. Groupings random, balanced and signed_magnitude need "
                "projection_type='partition'."
            )
        if assignment != "stateless":
            raise ValueError(
                "GPartConfig: projection_type='fastfood' has no group ids to store, so "
                "assignment_backend must be 'stateless' (valid with fastfood: stateless); "
                f"got {assignment!r}."
            )
    if grouping == "signed_magnitude" and assignment != "materialized":
        raise ValueError(
            "GPartConfig: grouping_strategy='signed_magnitude' depends on the base weights, so "
            "its ids are computed at injection and stored: it needs "
            "assignment_backend='materialized' (valid with signed_magnitude: materialized); "
            f"got {assignment!r}. Groupings that work with assignment_backend='stateless': "
            "random, balanced."
        )


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"GPartConfig.{name} must be one of {', '.join(choices)}; got {value!r}.")
