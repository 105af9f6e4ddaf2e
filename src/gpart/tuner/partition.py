"""The GPart partition: which of the `d` groups each adapted entry belongs to.

`Partition` answers, for an adapted space of `D` entries, the group ids of any range of
positions, the group sizes and the per-group scales, under the definitions of its
``scheme`` (``gpart.tuner.schemes``: *the reference* is the paper authors' code, whose
definitions schemes 2 and 3 follow). The ids are never stored: each is a pure function of
`(proj_seed, p)` (plus `D` for ``balanced``), computed on demand by the module of its
grouping:

* ``gpart.tuner.hashing``: splitmix64 on int64 tensors and the exact ``mod d``;
* ``gpart.tuner.groupings``: ``random``, scheme 3's stratified ``balanced``,
  ``signed_magnitude`` and the reference's materialized random ids;
* ``gpart.tuner.legacy``: the frozen definitions only older adapters use (schemes 1 and 2's
  Feistel ``balanced``, scheme 1's ``signed_magnitude``);
* ``gpart.tuner.scope``: the per-block scope, a partition per transformer block.

Changing any of them changes every saved adapter's meaning: the golden-id tests
(`tests/test_partition.py`, `tests/test_official_reference.py`) pin every scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import gpart.tuner.fused as fused
from gpart.tuner.groupings import random_ids_range, stratified_ids_range
from gpart.tuner.legacy import FeistelSpec
from gpart.tuner.schemes import SCHEME_CURRENT, SCHEME_STRATIFIED, SCHEMES, follows_reference

_MAX_D = (1 << 31) - 1  # both reductions (`hashing.reduce_hash`) keep their products in int64


@dataclass(frozen=True)
class Partition:
    """The partition of an adapted space of size `total` into `d` groups.

    `scheme`: which definitions the ids follow (``gpart.tuner.schemes``). `assignment`: under
    the reference's definitions, ``materialized`` random ids are the reference's other
    partition, a seeded ``torch.randint`` stream drawn layer by layer
    (``groupings.seeded_randint_ids``), not a function of the position; under scheme 1 it
    only caches the positional ids.
    """

    total: int
    d: int
    seed: int
    grouping: str
    scheme: int = SCHEME_CURRENT
    assignment: str = "stateless"

    def __post_init__(self) -> None:
        if self.d <= 0:
            raise ValueError(f"d must be a positive integer, got {self.d}.")
        if self.d > _MAX_D:
            raise ValueError(f"d must be < 2**31, got {self.d}.")
        if self.grouping not in ("random", "balanced", "signed_magnitude"):
            raise ValueError(
                "grouping must be 'random', 'balanced' or 'signed_magnitude', "
                f"got {self.grouping!r}."
            )
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}.")

    @property
    def positional(self) -> bool:
        """Whether ids are a function of the position (else they are drawn at injection)."""
        if self.grouping == "signed_magnitude":
            return False
        return not (
            follows_reference(self.scheme)
            and self.grouping == "random"
            and self.assignment == "materialized"
        )

    def _check_stateless(self) -> None:
        if not self.positional:
            # signed_magnitude: a function of the base weights (`signed_magnitude_ids`); the
            # reference's materialized random: a seeded RNG stream (`seeded_randint_ids`).
            # Both are computed once at injection and cached, never hashed from positions.
            raise ValueError(
                f"grouping={self.grouping!r} with assignment={self.assignment!r} (scheme "
                f"{self.scheme}) has no positional ids: they are computed at injection and "
                "cached, never hashed from positions."
            )

    @property
    def feistel(self) -> FeistelSpec:
        """The permutation behind schemes 1 and 2's ``balanced`` ids."""
        if self.scheme == SCHEME_STRATIFIED:
            raise ValueError("scheme 3's balanced grouping is stratified, not a permutation.")
        return FeistelSpec.build(self.total, self.seed, self.scheme)

    def group_ids(
        self,
        start: int,
        count: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.int64,
    ) -> torch.Tensor:
        """Group ids of positions `start .. start + count - 1` (int64, or `dtype`)."""
        self._check_stateless()
        dev = torch.device(device) if device is not None else torch.get_default_device()
        compiled = count > 0 and fused.enabled(count, dev)
        if self.grouping == "balanced":
            if count == 0:
                return torch.empty(0, dtype=dtype, device=dev)
            if self.scheme == SCHEME_STRATIFIED:
                return stratified_ids_range(
                    self.total, self.d, self.seed, start, count, dev, dtype, compiled
                )
            return self.feistel.group_ids_range(start, count, self.d, dev, dtype, compiled)
        return random_ids_range(self.d, self.seed, self.scheme, start, count, dev, dtype, compiled)

    def group_sizes(
        self, chunk_size: int = 1 << 22, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """`n_j` for every group (int64), by streaming over [0, D) in chunks."""
        self._check_stateless()
        if self.grouping == "balanced":
            base, extra = divmod(self.total, self.d)
            sizes = torch.full((self.d,), base, dtype=torch.int64, device=device)
            if self.scheme == SCHEME_STRATIFIED:  # the groups of the last, partial window
                sizes[self.group_ids(self.total - extra, extra, device)] += 1
            else:  # a permutation of [0, D), then mod d: the residues below D mod d
                sizes[:extra] += 1
            return sizes
        sizes = torch.zeros(self.d, dtype=torch.int64, device=device)
        for start in range(0, self.total, chunk_size):
            count = min(chunk_size, self.total - start)
            ids = self.group_ids(start, count, device, dtype=torch.int32)
            sizes += torch.bincount(ids, minlength=self.d)
        return sizes

    def scales(
        self,
        isometric: bool,
        device: torch.device | str | None = None,
        sizes: torch.Tensor | None = None,
        scoped: bool = False,
    ) -> torch.Tensor:
        """Per-group scale `s_j` (fp32), or 1 when not `isometric`. `sizes`: `group_sizes()`
        when the caller has them already (they cost a pass over D).

        Under the reference's definitions, as it computes them: `1 / sqrt(max(n_j, 1))` in fp32 (its
        block scope, `scoped`, uses `rsqrt`, which can differ in the last bit). Scheme 1:
        `1/sqrt(n_j)` in fp64, rounded to fp32, 0 for an empty group. An empty group's
        scale never matters: no entry reads it."""
        if not isometric:
            return torch.ones(self.d, dtype=torch.float32, device=device)
        if sizes is None:
            sizes = self.group_sizes(device=device)
        if follows_reference(self.scheme):
            counts = sizes.to(device=device).clamp(min=1).float()
            return counts.rsqrt() if scoped else 1.0 / torch.sqrt(counts)
        sizes = sizes.to(device=device, dtype=torch.float64)
        scales = torch.where(sizes > 0, sizes.clamp(min=1).rsqrt(), torch.zeros_like(sizes))
        return scales.to(torch.float32)
