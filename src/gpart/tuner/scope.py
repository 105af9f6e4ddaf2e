"""Partition scopes: the adapted space cut into per-block spaces
(``partition_scope="transformer_block"``), each with its own share of `theta` and its own seed.

A scope changes where groups may reach, not how ids are computed: each block's ids come
from its own `Partition` (or Fastfood map) over its positions, offset into the block's
slice of `theta`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpart.tuner.hashing import hash_positions
from gpart.tuner.schemes import SCHEME_CURRENT, follows_reference

_BLOCK_STREAM = 11  # separates per-block seeds from every other use of the hash


def block_seed(seed: int, block: int, scheme: int = SCHEME_CURRENT) -> int:
    """The seed of block `block` (its ordinal in natural order) under
    `partition_scope="transformer_block"`: `proj_seed + block` under the reference's
    definitions, the hash of the block index under `seed` in scheme 1."""
    if follows_reference(scheme):
        return seed + block
    h = hash_positions(torch.tensor([block], dtype=torch.int64), seed, stream=_BLOCK_STREAM)
    return int(h[0])


def split_evenly(d: int, parts: int) -> list[int]:
    """`d` split into `parts` shares; the first `d mod parts` get one more."""
    base, extra = divmod(d, parts)
    return [base + (1 if b < extra else 0) for b in range(parts)]


@dataclass(frozen=True)
class ScopeBlock:
    """One block of a scoped adapted space: positions `[start, start + projection.total)`
    map to `theta[theta_start : theta_start + projection.d]`."""

    name: str
    start: int
    theta_start: int
    projection: object  # a Partition, or a FastfoodProjection (gpart.tuner.fastfood)


@dataclass(frozen=True)
class ScopedPartition:
    """The adapted space cut into blocks (``partition_scope="transformer_block"``), each with
    its own partition (or Fastfood map) of its slice of `theta`; positions are block-major."""

    blocks: tuple[ScopeBlock, ...]

    @property
    def total(self) -> int:
        return sum(b.projection.total for b in self.blocks)

    @property
    def d(self) -> int:
        return sum(b.projection.d for b in self.blocks)

    def group_ids(
        self,
        start: int,
        count: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.int64,
    ) -> torch.Tensor:
        """Global group ids (the index into `theta`) of global positions `start ..`."""
        parts = []
        for b in self.blocks:
            lo = max(start, b.start)
            hi = min(start + count, b.start + b.projection.total)
            if lo < hi:
                local = b.projection.group_ids(lo - b.start, hi - lo, device=device)
                parts.append(local + b.theta_start)
        if not parts:
            return torch.empty(0, dtype=dtype, device=device)
        return torch.cat(parts).to(dtype)
