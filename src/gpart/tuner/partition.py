"""The GPart partition: which of the `d` groups each adapted entry belongs to.

Every adapted entry has a position `p` in the global adapted space `[0, D)` (modules in
model order, each weight in storage order, then its bias when adapted). Its group is a pure
function of `(proj_seed, p)` (plus `D` for the balanced variant), computed with plain int64
torch ops, so it is identical on every device, chunk size and process and never has to be
stored.

The hash is the splitmix64 finaliser applied to `p + (seed + 1) * golden`; int64
multiplication wraps modulo 2**64 on CPU and CUDA, which is exactly the unsigned arithmetic
the finaliser is defined in (right shifts are made logical with a mask).

* ``random``: group = the hash's low 32 bits mapped to `[0, d)` by a multiply-shift
  (`(h * d) >> 32`), i.e. i.i.d. uniform groups.
* ``balanced``: a keyed bijection of `[0, D)` (a 4-round Feistel network on the smallest
  even-bit power-of-two domain >= D, with cycle walking back into `[0, D)`), then `mod d`.
  Group sizes are `floor(D/d)` or `ceil(D/d)`.

Changing anything in this file changes every saved adapter's meaning: the golden-id test
(`tests/test_partition.py`) pins it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_MASK64 = (1 << 64) - 1
_MAX_D = (1 << 31) - 1  # multiply-shift keeps (h32 * d) inside int64


def _i64(value: int) -> int:
    """Reinterpret an unsigned 64-bit constant as the signed int64 torch stores."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


_GOLDEN = 0x9E3779B97F4A7C15
_M1 = _i64(0xBF58476D1CE4E5B9)
_M2 = _i64(0x94D049BB133111EB)
_LOW32 = 0xFFFFFFFF


def _lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (a bijection of 64-bit words)."""
    x = x ^ _lsr(x, 30)
    x = x * _M1
    x = x ^ _lsr(x, 27)
    x = x * _M2
    return x ^ _lsr(x, 31)


def seed_key(seed: int, stream: int = 0) -> int:
    """The additive key of a seed (stream separates unrelated uses, e.g. dropout)."""
    return _i64((seed + 1) * _GOLDEN + stream * 0xD1B54A32D192ED03)


def hash_positions(positions: torch.Tensor, seed: int, stream: int = 0) -> torch.Tensor:
    """64-bit hash of int64 positions under a seed."""
    return mix64(positions + seed_key(seed, stream))


def random_group_ids(positions: torch.Tensor, d: int, seed: int) -> torch.Tensor:
    """i.i.d. uniform group in [0, d) for each position (int64)."""
    h = hash_positions(positions, seed) & _LOW32
    return (h * d) >> 32


@dataclass(frozen=True)
class FeistelSpec:
    """A keyed bijection on [0, 2**(2*half_bits)) restricted to [0, D) by cycle walking."""

    total: int
    half_bits: int
    keys: tuple[int, ...]

    @classmethod
    def build(cls, total: int, seed: int, rounds: int = 4) -> FeistelSpec:
        bits = max(2, math.ceil(math.log2(max(total, 2))))
        half_bits = (bits + 1) // 2
        keys = tuple(seed_key(seed, stream=1 + r) for r in range(rounds))
        return cls(total=total, half_bits=half_bits, keys=keys)

    def _encrypt(self, x: torch.Tensor) -> torch.Tensor:
        mask = (1 << self.half_bits) - 1
        left = x >> self.half_bits
        right = x & mask
        for key in self.keys:
            left, right = right, left ^ (mix64(right + key) & mask)
        return (left << self.half_bits) | right

    def permute(self, positions: torch.Tensor) -> torch.Tensor:
        out = self._encrypt(positions)
        outside = out >= self.total
        # Cycle walking: re-encrypt the few values that left [0, D) until they return; the
        # domain is < 4 D, so the expected number of extra rounds is small.
        while bool(outside.any()):
            idx = outside.nonzero().squeeze(1)
            walked = self._encrypt(out[idx])
            out[idx] = walked
            outside[idx] = walked >= self.total
        return out


def balanced_group_ids(positions: torch.Tensor, d: int, feistel: FeistelSpec) -> torch.Tensor:
    return feistel.permute(positions) % d


@dataclass(frozen=True)
class Partition:
    """The partition of an adapted space of size `total` into `d` groups."""

    total: int
    d: int
    seed: int
    grouping: str

    def __post_init__(self) -> None:
        if self.d <= 0:
            raise ValueError(f"d must be a positive integer, got {self.d}.")
        if self.d > _MAX_D:
            raise ValueError(f"d must be < 2**31, got {self.d}.")
        if self.grouping not in ("random", "balanced"):
            raise ValueError(f"grouping must be 'random' or 'balanced', got {self.grouping!r}.")

    @property
    def feistel(self) -> FeistelSpec:
        return FeistelSpec.build(self.total, self.seed)

    def group_ids(
        self, start: int, count: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Group ids (int64) of positions `start .. start + count - 1`."""
        positions = torch.arange(start, start + count, dtype=torch.int64, device=device)
        if self.grouping == "random":
            return random_group_ids(positions, self.d, self.seed)
        return balanced_group_ids(positions, self.d, self.feistel)

    def group_sizes(
        self, chunk_size: int = 1 << 22, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """`n_j` for every group (int64), by streaming over [0, D) in chunks."""
        if self.grouping == "balanced":
            base, extra = divmod(self.total, self.d)
            sizes = torch.full((self.d,), base, dtype=torch.int64, device=device)
            sizes[:extra] += 1
            return sizes
        sizes = torch.zeros(self.d, dtype=torch.int64, device=device)
        for start in range(0, self.total, chunk_size):
            count = min(chunk_size, self.total - start)
            sizes += torch.bincount(self.group_ids(start, count, device), minlength=self.d)
        return sizes

    def scales(self, isometric: bool, device: torch.device | str | None = None) -> torch.Tensor:
        """Per-group scale `s_j` (fp32): `1/sqrt(n_j)` (0 for an empty group) or 1."""
        if not isometric:
            return torch.ones(self.d, dtype=torch.float32, device=device)
        sizes = self.group_sizes(device=device).to(torch.float64)
        scales = torch.where(sizes > 0, sizes.clamp(min=1).rsqrt(), torch.zeros_like(sizes))
        return scales.to(torch.float32)
