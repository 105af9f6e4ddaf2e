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

Speed: for large ranges the same integer arithmetic runs as fused `torch.compile` kernels
(`gpart.tuner.fused`); they compute bit-identical ids (integer ops are exact), so the fused
and eager paths are interchangeable. The balanced walk's stragglers are compacted in stages
whose sizes are counted on the first call for a layer's range and reused on a GPU, where
counting would make the host wait on every step (`FeistelSpec._walk_stragglers`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpart.tuner import fused

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
    return hash_keyed(positions + seed_key(seed, stream))


def hash_keyed(keyed: torch.Tensor) -> torch.Tensor:
    """The hash of `position + seed_key(seed, stream)` (already keyed)."""
    return mix64(keyed)


def random_ids_of_keyed(keyed: torch.Tensor, d: int | torch.Tensor) -> torch.Tensor:
    """Random-grouping ids of `position + seed_key(seed)` (int64): multiply-shift of the
    hash's low 32 bits. `d` may be a 0-d tensor (fused kernels) or an int."""
    return ((hash_keyed(keyed) & _LOW32) * d) >> 32


def random_group_ids(positions: torch.Tensor, d: int, seed: int) -> torch.Tensor:
    """i.i.d. uniform group in [0, d) for each position (int64)."""
    return random_ids_of_keyed(positions + seed_key(seed), d)


def keyed_start(start: int, seed: int, stream: int = 0) -> int:
    """`start + seed_key(seed, stream)` as the int64 the hash sees (wrapping like torch)."""
    return _i64(start + seed_key(seed, stream))


# ---------------------------------------------------------------- fused kernels (pure)
# Scalars travel as 0-d int64 tensors: one compiled graph serves every offset and seed.


def _k_random_ids(n: int, keyed0: torch.Tensor, d: torch.Tensor, dtype: torch.dtype):
    keyed = torch.arange(n, dtype=torch.int64, device=keyed0.device) + keyed0
    return random_ids_of_keyed(keyed, d).to(dtype)


def _encrypt_t(x, keys, nkeys: int, half_bits, mask):
    """`FeistelSpec._encrypt` with the spec's numbers as tensors (same integer ops)."""
    left = x >> half_bits
    right = x & mask
    for r in range(nkeys):
        left, right = right, left ^ (mix64(right + keys[r]) & mask)
    return (left << half_bits) | right


def _walk(out, keys, nkeys: int, half_bits, mask, total, rounds: int):
    # Cycle walking without data-dependent control flow: every lane runs `rounds` steps,
    # each re-encrypting only values still outside [0, total).
    for _ in range(rounds):
        out = torch.where(out >= total, _encrypt_t(out, keys, nkeys, half_bits, mask), out)
    return out


def _k_permute(n: int, start, keys, nkeys: int, half_bits, mask, total, rounds: int):
    x = torch.arange(n, dtype=torch.int64, device=start.device) + start
    out = _encrypt_t(x, keys, nkeys, half_bits, mask)
    return _walk(out, keys, nkeys, half_bits, mask, total, rounds)


def _k_rewalk(out, keys, nkeys: int, half_bits, mask, total, rounds: int):
    return _walk(out, keys, nkeys, half_bits, mask, total, rounds)


def _k_mod(x, d, dtype: torch.dtype):
    return (x % d).to(dtype)


def _mod_exact(x, d):
    """`x % d` for 0 <= x < 2**53, 0 < d < 2**31 through float64: exact there (the rounded
    quotient of x/d cannot reach the next integer: its gap to it is >= 1/d, more than x/d's
    rounding error x/d * 2**-53), and vectorised, unlike int64 division with a runtime d."""
    q = torch.floor(x.to(torch.float64) / d.to(torch.float64)).to(torch.int64)
    return x - q * d


def _k_balanced_ids(n: int, start, keys, nkeys: int, half_bits, mask, total, d, rounds: int, dtype):
    # Permute, walk and reduce mod d in one pass (values still outside [0, D) after `rounds`
    # steps get a meaningless id here and are fixed by the caller from `out`).
    out = _k_permute(n, start, keys, nkeys, half_bits, mask, total, rounds)
    return out, _mod_exact(out, d).to(dtype)


_RANDOM_IDS = fused.kernel(_k_random_ids)
_PERMUTE = fused.kernel(_k_permute)
_REWALK = fused.kernel(_k_rewalk)
_MOD = fused.kernel(_k_mod)
_BALANCED_IDS = fused.kernel(_k_balanced_ids)
# Walk steps per lane: the first pass is short (most values land inside [0, D) within a few
# encryptions: the domain is < 4 D), the rare stragglers are compacted and walked longer.
_FIRST_ROUNDS = 3
_LATER_ROUNDS = 10
# Balanced ids: more in-kernel steps than `permute_range` (fewer stragglers to compact);
# measured best of 3..6 on a 768 x 3072 layer with D = 85M (a 3.16x larger Feistel domain).
_BALANCED_ROUNDS = 5
# `_mod_exact` holds below 2**53; larger adapted spaces (never seen in practice) use int64 %.
_EXACT_F64 = 1 << 53


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

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(keys, half_bits, mask, total) as int64 tensors on `device`, for the kernels
        (made once per device, like every kernel constant: `fused.scalar`)."""
        return _feistel_tensors(self, fused.concrete_device(device))

    def permute_range(self, start: int, count: int, device: torch.device) -> torch.Tensor:
        """`permute(arange(start, start + count))` by the fused kernels (bit-identical)."""
        keys, half_bits, mask, total = self.tensors(device)
        start_t = fused.scalar(start, device)
        out = _PERMUTE(count, start_t, keys, len(self.keys), half_bits, mask, total, _FIRST_ROUNDS)
        self._walk_stragglers(out, ("permute", start, count), _REWALK)
        return out

    def group_ids_range(
        self,
        start: int,
        count: int,
        d: int,
        device: torch.device,
        dtype: torch.dtype,
        compiled: bool = True,
    ) -> torch.Tensor:
        """`permute(arange(start, start + count)) % d`, bit-identical to it: permutation,
        walk and `mod d` in one pass over all entries, then only the stragglers still
        outside `[0, D)` are compacted and walked further. `compiled`: the fused kernels
        (large ranges), else the same functions run eagerly."""
        if self.total >= _EXACT_F64:  # never seen in practice: no float64 shortcut
            if not compiled:
                positions = torch.arange(start, start + count, dtype=torch.int64, device=device)
                return (self.permute(positions) % d).to(dtype)
            return _MOD(self.permute_range(start, count, device), fused.scalar(d, device), dtype)
        keys, half_bits, mask, total = self.tensors(device)
        kernel = _BALANCED_IDS if compiled else _k_balanced_ids
        out, ids = kernel(
            count,
            fused.scalar(start, device),
            keys,
            len(self.keys),
            half_bits,
            mask,
            total,
            fused.scalar(d, device),
            _BALANCED_ROUNDS,
            dtype,
        )
        walked = self._walk_stragglers(
            out, ("ids", start, count), _REWALK if compiled else _k_rewalk
        )
        if walked.numel():
            ids[walked] = (out[walked] % d).to(dtype)
        return ids

    def _walk_stragglers(
        self, out: torch.Tensor, key: tuple, rewalk: Callable[..., torch.Tensor]
    ) -> torch.Tensor:
        """Cycle-walk, in place, the entries of `out` still outside `[0, D)` until none is
        (`rewalk`: `_REWALK` or its eager function); returns the indices of every entry it
        changed.

        Each stage compacts the stragglers, walks them `_LATER_ROUNDS` steps, and keeps
        those still outside. How many there are at each stage depends only on the spec and
        the range, so the first call on a range counts them (`nonzero`: on a GPU the host
        waits for each count) and later calls on a GPU reuse the counts with
        `nonzero_static`, which needs no wait: a training step never blocks on the walk.
        On a CPU `nonzero` stays (it is faster there and nothing waits).
        """
        keys, half_bits, mask, total = self.tensors(out.device)
        static = _static_walk(out.device)
        sizes = _WALK_SIZES.get((self, *key)) if static else None
        counted: list[int] = []
        walked = changed = None
        stage = 0
        while True:
            outside = (out if walked is None else changed) >= self.total
            if sizes is None:
                picked = outside.nonzero().squeeze(1)
                counted.append(picked.numel())
            else:
                picked = torch.nonzero_static(outside, size=sizes[stage]).squeeze(1)
            n = picked.numel()
            stage += 1
            if n == 0:
                break
            walked = picked if walked is None else walked[picked]
            changed = rewalk(out[walked], keys, len(self.keys), half_bits, mask, total,
                             _LATER_ROUNDS)  # fmt: skip
            out[walked] = changed
            if stage == 1:
                stragglers = walked
        if static and sizes is None and len(_WALK_SIZES) < _WALK_SIZES_MAX:
            _WALK_SIZES[(self, *key)] = tuple(counted)
        return out.new_empty(0) if stage == 1 else stragglers

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


# Straggler counts per stage of the walk, by (spec, kind, start, count): a few ints per
# adapted layer (see `FeistelSpec._walk_stragglers`); bounded so a long-lived process that
# builds many partitions keeps a small table.
_WALK_SIZES: dict[tuple, tuple[int, ...]] = {}
_WALK_SIZES_MAX = 1 << 16


def _static_walk(device: torch.device) -> bool:
    """Whether the walk reuses its counted stage sizes (no host wait): on accelerators."""
    return device.type != "cpu"


@functools.lru_cache(maxsize=64)
def _feistel_tensors(spec: FeistelSpec, device: torch.device) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        return (
            torch.stack([fused.scalar(k, device) for k in spec.keys]),
            fused.scalar(spec.half_bits, device),
            fused.scalar((1 << spec.half_bits) - 1, device),
            fused.scalar(spec.total, device),
        )


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
        if self.grouping not in ("random", "balanced", "signed_magnitude"):
            raise ValueError(
                "grouping must be 'random', 'balanced' or 'signed_magnitude', "
                f"got {self.grouping!r}."
            )

    def _check_stateless(self) -> None:
        if self.grouping == "signed_magnitude":
            # Its ids are a function of the base weights, not of the position: see
            # `signed_magnitude_ids`, called once at injection.
            raise ValueError(
                "grouping='signed_magnitude' ids depend on the base weights: they are computed "
                "at injection (signed_magnitude_ids) and cached, never hashed from positions."
            )

    @property
    def feistel(self) -> FeistelSpec:
        return FeistelSpec.build(self.total, self.seed)

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
            return self.feistel.group_ids_range(start, count, self.d, dev, dtype, compiled)
        if compiled:
            keyed0 = fused.scalar(keyed_start(start, self.seed), dev)
            return _RANDOM_IDS(count, keyed0, fused.scalar(self.d, dev), dtype)
        positions = torch.arange(start, start + count, dtype=torch.int64, device=dev)
        return random_group_ids(positions, self.d, self.seed).to(dtype)

    def group_sizes(
        self, chunk_size: int = 1 << 22, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """`n_j` for every group (int64), by streaming over [0, D) in chunks."""
        self._check_stateless()
        if self.grouping == "balanced":
            base, extra = divmod(self.total, self.d)
            sizes = torch.full((self.d,), base, dtype=torch.int64, device=device)
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
    ) -> torch.Tensor:
        """Per-group scale `s_j` (fp32): `1/sqrt(n_j)` (0 for an empty group) or 1.
        `sizes`: `group_sizes()` when the caller has them already (they cost a pass over D)."""
        if not isometric:
            return torch.ones(self.d, dtype=torch.float32, device=device)
        if sizes is None:
            sizes = self.group_sizes(device=device)
        sizes = sizes.to(device=device, dtype=torch.float64)
        scales = torch.where(sizes > 0, sizes.clamp(min=1).rsqrt(), torch.zeros_like(sizes))
        return scales.to(torch.float32)


# ---------------------------------------------------------------- ablation groupings / scopes
_BLOCK_STREAM = 11  # separates per-block seeds from every other use of the hash


def block_seed(seed: int, block: int) -> int:
    """The seed of block `block` under `partition_scope="transformer_block"`: the hash of the
    block index under `seed`, so blocks draw unrelated partitions from one `proj_seed`."""
    h = hash_positions(torch.tensor([block], dtype=torch.int64), seed, stream=_BLOCK_STREAM)
    return int(h[0])


def split_evenly(d: int, parts: int) -> list[int]:
    """`d` split into `parts` shares; the first `d mod parts` get one more."""
    base, extra = divmod(d, parts)
    return [base + (1 if b < extra else 0) for b in range(parts)]


def signed_magnitude_ids(values: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ids (int64) and group sizes of the ``signed_magnitude`` grouping.

    The entries are split by the sign of the base weight (negative: `w < 0`; zeros join the
    non-negative pool). The negative pool gets `round(d * n_neg / N)` groups (half up, exact
    integer arithmetic), clamped so that each non-empty pool has at least one group and no
    pool more groups than entries; the non-negative pool gets the rest and the ids after the
    negative pool's. Inside a pool the entries are sorted by `|w|` (ties by position) and cut
    into equal-count contiguous bins (sizes differ by at most one), smallest magnitudes first.

    Args:
        values: the base weights (and adapted biases) in adapted-space order, 1-D.
        d: number of groups.

    Returns:
        (ids, sizes): ids in `[0, d)` for every entry, `n_j` for every group.

    Raises:
        ValueError: when `d > N`, or `d < 2` while both signs occur.
    """
    values = values.reshape(-1)
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()  # exact for bf16/fp16
    n = values.numel()
    if d > n:
        raise ValueError(f"signed_magnitude: d={d} is larger than the {n} entries to group.")
    neg = values < 0
    n_neg = int(neg.sum())
    n_pos = n - n_neg
    if n_neg == 0:
        d_neg = 0
    elif n_pos == 0:
        d_neg = d
    else:
        if d < 2:
            raise ValueError(
                "signed_magnitude: both signs occur, so d must be >= 2 (one group per sign)."
            )
        d_neg = (2 * d * n_neg + n) // (2 * n)
        d_neg = min(max(d_neg, 1, d - n_pos), n_neg, d - 1)
    ids = torch.empty(n, dtype=torch.int64, device=values.device)
    for pool, groups, first in ((neg, d_neg, 0), (~neg, d - d_neg, d_neg)):
        idx = pool.nonzero().squeeze(1)  # ascending positions
        m = idx.numel()
        if m == 0:
            continue
        order = torch.sort(values[idx].abs(), stable=True).indices
        ranks = torch.arange(m, dtype=torch.int64, device=values.device)
        ids[idx[order]] = ranks * groups // m + first
    sizes = torch.bincount(ids, minlength=d)
    return ids, sizes


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
