"""Frozen definitions that only older adapters use: schemes 1 and 2's balanced ids, scheme 1's
``signed_magnitude`` groups.

New adapters (scheme 3, ``gpart.tuner.schemes``) never call into this module; it exists so
that adapters saved under the older schemes reload to their own weights, and it never
changes (the golden-id tests of `tests/test_partition.py` and
`tests/test_tuner_ablations.py` pin it).

* Balanced ids of schemes 1 and 2: a keyed bijection of `[0, 2**b)` (a Feistel network)
  permutes the positions, cycle walking back into `[0, D)`, then ``mod d``: a pseudorandom
  balanced partition (`FeistelSpec`). Scheme 2: an alternating network on the smallest
  width `b` with `2**b >= D` (< 2 encryptions per entry on average), round keys from the
  seed through splitmix64. Scheme 1: a 4-round balanced network on the smallest even width,
  keyed by `seed_key(seed, 1 + r)`. Both cost more per entry than scheme 3's stratified ids
  (``gpart.tuner.groupings``): four hash rounds per encryption, and the entries that left
  `[0, D)` are encrypted again, where scheme 3 takes two exact reductions and no walk.
* Scheme 1's ``signed_magnitude``: pools by sign, half-up rounding of the pools' shares,
  equal-count bins by `|w|` (`signed_magnitude_ids`).

Speed: for large ranges the walk runs as fused `torch.compile` kernels (`gpart.tuner.fused`),
bit-identical to the eager one. Its stragglers are compacted in stages whose sizes are
counted on the first call for a layer's range and reused on a GPU, where counting would
make the host wait on every step (`FeistelSpec._walk_stragglers`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

import gpart.tuner.fused as fused
from gpart.tuner.hashing import GOLDEN, as_int64, divmod_f64, mix64, mix64_int, seed_key
from gpart.tuner.schemes import SCHEME_CURRENT, follows_reference

# ---------------------------------------------------------------- balanced ids, schemes 1 and 2
# Scalars travel as 0-d int64 tensors: one compiled graph serves every offset and seed.


def _encrypt_t(x, keys, shift, mask_lo, mask_hi, nkeys: int, alternating: bool):
    """`FeistelSpec._encrypt` with the spec's numbers as tensors (same integer ops).

    `x = (left << shift) | right`. Scheme 1 (balanced halves, `mask_lo == mask_hi`): each
    round swaps the halves, `(l, r) -> (r, l ^ F(r))`. Scheme 2 (`alternating`, halves of
    `b // 2` and `b - b // 2` bits): rounds update the left half from the right one, then the
    right from the left, in turn; each step is undone by repeating it, so the whole is a
    bijection of `[0, 2**b)` for any width `b`."""
    left = x >> shift
    right = x & mask_lo
    for r in range(nkeys):
        if not alternating:
            left, right = right, left ^ (mix64(right + keys[r]) & mask_lo)
        elif r % 2 == 0:
            left = left ^ (mix64(right + keys[r]) & mask_hi)
        else:
            right = right ^ (mix64(left + keys[r]) & mask_lo)
    return (left << shift) | right


def _walk(out, cipher, nkeys: int, alternating: bool, total, rounds: int):
    # Cycle walking without data-dependent control flow: every lane runs `rounds` steps,
    # each re-encrypting only values still outside [0, total).
    for _ in range(rounds):
        # (not `out >= total`: gpart.tuner.hashing, AVX2 MASKS)
        out = torch.where(out < total, out, _encrypt_t(out, *cipher, nkeys, alternating))
    return out


def _k_permute(n: int, start, cipher, nkeys: int, alternating: bool, total, rounds: int):
    x = torch.arange(n, dtype=torch.int64, device=start.device) + start
    out = _encrypt_t(x, *cipher, nkeys, alternating)
    return _walk(out, cipher, nkeys, alternating, total, rounds)


def _k_rewalk(out, cipher, nkeys: int, alternating: bool, total, rounds: int):
    return _walk(out, cipher, nkeys, alternating, total, rounds)


def _k_mod(x, d, dtype: torch.dtype):
    return (x % d).to(dtype)


def _mod_exact(x, d):
    """`x % d` for 0 <= x < 2**53, 0 < d < 2**31 through float64: exact there (the rounded
    quotient of x/d cannot reach the next integer: its gap to it is >= 1/d, more than x/d's
    rounding error x/d * 2**-53), and vectorised, unlike int64 division with a runtime d."""
    return divmod_f64(x, d, 1.0 / d.to(torch.float64))[1]


def _k_balanced_ids(
    n: int, start, cipher, nkeys: int, alternating: bool, total, d, rounds: int, dtype
):
    # Permute, walk and reduce mod d in one pass (values still outside [0, D) after `rounds`
    # steps get a meaningless id here and are fixed by the caller from `out`).
    out = _k_permute(n, start, cipher, nkeys, alternating, total, rounds)
    return out, _mod_exact(out, d).to(dtype)


_PERMUTE = fused.kernel(_k_permute)
_REWALK = fused.kernel(_k_rewalk)
_MOD = fused.kernel(_k_mod)
_BALANCED_IDS = fused.kernel(_k_balanced_ids)
# Walk steps per lane: the first pass is short (most values land inside [0, D) within a few
# encryptions: the domain is < 4 D), the rare stragglers are compacted and walked longer.
_FIRST_ROUNDS = 3
_LATER_ROUNDS = 10
# A bound that only a wrong kernel reaches: at least a quarter of the Feistel domain is in
# [0, D), so an entry is still outside after k steps with probability about (3/4)**k,
# below 1e-120 after these 1000 (scheme 2's domain is < 2 D: far less).
_MAX_STAGES = 100
# Balanced ids: more in-kernel steps than `permute_range`, since each straggler left after
# them costs a compaction and a `mod d` of its own. Scheme 2's domain is < 2 D, so fewer
# values leave [0, D) per encryption than in scheme 1's (< 4 D) and fewer steps suffice. Any
# numbers give the same ids (the walk runs until no value is outside); they set the speed.
_BALANCED_ROUNDS = 5
_BALANCED_ROUNDS_ODD = 3
# `_mod_exact` holds below 2**53; larger adapted spaces (never seen in practice) use int64 %.
_EXACT_F64 = 1 << 53


@dataclass(frozen=True)
class FeistelSpec:
    """A keyed bijection on `[0, 2**bits)` restricted to `[0, D)` by cycle walking.

    `alternating=False` (scheme 1): a balanced 4-round Feistel network, `bits` even.
    `alternating=True` (scheme 2): left half `bits // 2`, right half the rest, updated in
    turn (see `_encrypt_t`), `bits` the smallest width with `2**bits >= D`.
    """

    total: int
    bits: int
    keys: tuple[int, ...]
    alternating: bool = False

    @classmethod
    def build(cls, total: int, seed: int, scheme: int = SCHEME_CURRENT) -> FeistelSpec:
        bits = max(2, math.ceil(math.log2(max(total, 2))))
        if follows_reference(scheme):
            # Round keys from the seed through splitmix64 itself, one per round.
            keys = tuple(as_int64(mix64_int(seed + (r + 1) * GOLDEN)) for r in range(4))
            return cls(total=total, bits=bits, keys=keys, alternating=True)
        keys = tuple(seed_key(seed, stream=1 + r) for r in range(4))
        return cls(total=total, bits=2 * ((bits + 1) // 2), keys=keys)

    @property
    def shift(self) -> int:
        """Width of the right (low) half."""
        return self.bits - self.bits // 2 if self.alternating else self.bits // 2

    @property
    def _masks(self) -> tuple[int, int]:
        """(low mask, high mask) of the two halves."""
        return (1 << self.shift) - 1, (1 << (self.bits - self.shift)) - 1

    def _encrypt(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self._masks
        return _encrypt_t(x, self.keys, self.shift, lo, hi, len(self.keys), self.alternating)

    def tensors(self, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """((keys, shift, low mask, high mask), total) as int64 tensors on `device`, for the
        kernels (made once per device, like every kernel constant: `fused.scalar`)."""
        return _feistel_tensors(self, fused.concrete_device(device))

    @property
    def _static(self) -> tuple[int, bool]:
        return len(self.keys), self.alternating

    def permute_range(self, start: int, count: int, device: torch.device) -> torch.Tensor:
        """`permute(arange(start, start + count))` by the fused kernels (bit-identical)."""
        cipher, total = self.tensors(device)
        start_t = fused.scalar(start, device)
        out = _PERMUTE(count, start_t, cipher, *self._static, total, _FIRST_ROUNDS)
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
        cipher, total = self.tensors(device)
        kernel = _BALANCED_IDS if compiled else _k_balanced_ids
        rounds = _BALANCED_ROUNDS_ODD if self.alternating else _BALANCED_ROUNDS
        out, ids = kernel(
            count,
            fused.scalar(start, device),
            cipher,
            *self._static,
            total,
            fused.scalar(d, device),
            rounds,
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
        cipher, total = self.tensors(out.device)
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
            if stage > _MAX_STAGES:
                raise RuntimeError(
                    f"GPart: the balanced grouping's cycle walk left {n} entries outside "
                    f"[0, {self.total}) after {_MAX_STAGES * _LATER_ROUNDS} steps, which a "
                    "correct permutation does not; its fused kernels computed wrong values. "
                    "Set GPART_COMPILE=0 to run them eagerly, and report the torch version "
                    "and CPU or GPU."
                )
            walked = picked if walked is None else walked[picked]
            changed = rewalk(out[walked], cipher, *self._static, total, _LATER_ROUNDS)
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
def _feistel_tensors(spec: FeistelSpec, device: torch.device) -> tuple:
    lo, hi = spec._masks
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        cipher = (
            torch.stack([fused.scalar(k, device) for k in spec.keys]),
            fused.scalar(spec.shift, device),
            fused.scalar(lo, device),
            # Its own tensor even when equal to the low mask (scheme 1): dynamo guards on
            # aliased inputs, and one alias more would be one compiled graph more.
            torch.full((), hi, dtype=torch.int64, device=device),
        )
        return cipher, fused.scalar(spec.total, device)


# ---------------------------------------------------------------- signed_magnitude, scheme 1
def signed_magnitude_ids(values: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scheme 1's ``signed_magnitude`` group ids (int64) and group sizes.

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
