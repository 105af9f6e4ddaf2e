"""The GPart partition: which of the `d` groups each adapted entry belongs to.

Every adapted entry has a position `p` in the global adapted space `[0, D)` (modules in
model order, each weight in storage order, then its bias when adapted). Its group is a pure
function of `(proj_seed, p)` (plus `D` for the balanced variant), computed with plain int64
torch ops, so it is identical on every device, chunk size and process and never has to be
stored. int64 multiplication wraps modulo 2**64 on CPU and CUDA, which is exactly the
unsigned arithmetic the splitmix64 finaliser is defined in (right shifts are made logical
with a mask).

Three schemes (``GPartConfig.scheme_version``) define the ids; an adapter records its own:

* **2 and 3, the reference definitions** (the paper authors' code, SamsungLabs/GPart, its
  ``peft/tuners/gpart/grouping.py``; 3 is the default for new adapters):
  ``random`` ids are ``splitmix64(p + proj_seed + 0x9E3779B97F4A7C15)`` read as an unsigned
  64-bit number, ``mod d``. The reduction is exact without an integer division (which does
  not vectorise): `h = hi 2**32 + lo`, `t = hi (2**32 mod d) + lo < 2**63` has the same
  residue, and `floor(t / d)` is found through float64 from below within one, then
  corrected once (`_mod_u64`); a power-of-two `d` takes the hash's low bits, which is the
  same number. The two differ only in ``balanced``, this project's extension (the
  reference has none):

  - scheme 3, *stratified*: position `p` lies in window `c = p // d` at offset
    `o = p mod d`, and its group is `(a_c o + b_c) mod d`, where
    `b_c = splitmix64(c + k_b) mod d` and `a_c` is entry `splitmix64(c + k_a) >> 54` of a
    table of 1024 units of `d` (`unit_table`; keys from `stratified_keys`). Each window is
    a bijection onto the groups, so every group holds exactly one entry of every full
    window and the sizes differ by at most one; the cost is two exact float64 reductions
    per entry and no cycle walk. It is not a uniformly random balanced partition: two
    entries of one window are never in one group, and within a window the groups of
    entries `k` apart differ by `a_c k`.
  - scheme 2: an alternating Feistel network on the smallest bit width `b` with
    `2**b >= D` permutes the positions (cycle walking back into `[0, D)`, < 2
    encryptions per entry on average), then ``mod d``: a pseudorandom balanced partition,
    ~6x slower to compute than scheme 3's.
* **1, this project's earlier definitions** (adapters saved before it adopted the
  reference's): ``random`` is the multiply-shift `((h & 0xFFFFFFFF) * d) >> 32` of
  `splitmix64(p + (seed + 1) * golden)`; ``balanced`` a 4-round balanced Feistel network
  on the smallest even bit width. Kept so that those adapters reload to their own weights.

Elsewhere in this package "scheme 2" in a comment means 2 and 3 (`follows_reference`)
unless it is about ``balanced``.

Changing anything in this file changes every saved adapter's meaning: the golden-id tests
(`tests/test_partition.py`, `tests/test_official_reference.py`) pin every scheme.

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
from fractions import Fraction

import torch

import gpart.tuner.fused as fused

_MASK64 = (1 << 64) - 1
_MAX_D = (1 << 31) - 1  # both reductions keep their products inside int64

# ``GPartConfig.scheme_version``: which definitions an adapter's ids follow (module doc).
SCHEME_LEGACY = 1
SCHEME_OFFICIAL = 2
SCHEME_STRATIFIED = 3
SCHEMES = (SCHEME_LEGACY, SCHEME_OFFICIAL, SCHEME_STRATIFIED)
# What new adapters get.
SCHEME_CURRENT = SCHEME_STRATIFIED


def follows_reference(scheme: int) -> bool:
    """Whether `scheme` uses the reference implementation's definitions (2 and later: they
    differ only in this project's own ``balanced`` grouping)."""
    return scheme >= SCHEME_OFFICIAL


def _i64(value: int) -> int:
    """Reinterpret an unsigned 64-bit constant as the signed int64 torch stores."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


_GOLDEN = 0x9E3779B97F4A7C15
_M1 = _i64(0xBF58476D1CE4E5B9)
_M2 = _i64(0x94D049BB133111EB)
_LOW32 = 0xFFFFFFFF
_STREAM_GAMMA = 0xD1B54A32D192ED03  # separates `seed_key`'s streams


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


def mix64_int(x: int) -> int:
    """The splitmix64 finaliser on one unsigned Python int (for constants)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def seed_key(seed: int, stream: int = 0) -> int:
    """The additive key of a seed in this project's own streams (stream separates unrelated
    uses, e.g. dropout; stream 0 is scheme 1's random grouping)."""
    return _i64((seed + 1) * _GOLDEN + stream * _STREAM_GAMMA)


def random_key(seed: int, scheme: int) -> int:
    """The additive key of the ``random`` grouping: `p + key` is what the hash sees."""
    if follows_reference(scheme):
        return _i64(seed + _GOLDEN)  # the reference: proj_seed + the splitmix64 gamma
    return seed_key(seed)


def hash_positions(positions: torch.Tensor, seed: int, stream: int = 0) -> torch.Tensor:
    """64-bit hash of int64 positions under a seed."""
    return hash_keyed(positions + seed_key(seed, stream))


def hash_keyed(keyed: torch.Tensor) -> torch.Tensor:
    """The hash of `position + key` (already keyed)."""
    return mix64(keyed)


def _mulshift(h: torch.Tensor, d: int | torch.Tensor) -> torch.Tensor:
    """Scheme 1: the hash's low 32 bits mapped to [0, d) by a multiply-shift."""
    return ((h & _LOW32) * d) >> 32


def _divmod_f64(x, d, inv_d):
    """`(x // d, x % d)` for 0 <= x, x / d < 2**51, 0 < d < 2**31, without an integer
    division: the float64 quotient `x * inv_d` has a relative error below 3 2**-53, so its
    truncation is the true quotient or one off, corrected once each way."""
    q = (x.to(torch.float64) * inv_d).to(torch.int64)
    r = x - q * d
    low = r < 0
    q, r = torch.where(low, q - 1, q), torch.where(low, r + d, r)
    high = r >= d
    return torch.where(high, q + 1, q), torch.where(high, r - d, r)


def _mod_u64(h: torch.Tensor, d, r32, inv_lo) -> torch.Tensor:
    """Scheme 2: `h` read as an unsigned 64-bit number, `mod d` (0 < d < 2**31), exactly.

    `r32 = 2**32 mod d` and `inv_lo`, a float64 just below `1 / d` (`mod_constants`). With
    `h = hi 2**32 + lo`, `t = hi r32 + lo` is congruent to `h` and `< 2**32 d + 2**32 <=
    2**63`. `inv_lo` is `1 / d` lowered by a relative 2**-48, more than the float64 rounding
    of `t` and of the product (< 3 2**-53) can take back, so the truncated quotient is never
    above `floor(t / d)`; and at most 2**33 2**-47.9 < 1 below `t / d`, so never more than one
    below it. One comparison then corrects it (libdivide's one-sided correction, with a
    float64 reciprocal: int64 division does not vectorise)."""
    t = _lsr(h, 32) * r32 + (h & _LOW32)
    q = (t.to(torch.float64) * inv_lo).to(torch.int64)
    r = t - q * d
    return torch.where(r >= d, r - d, r)


def reduce_hash(h: torch.Tensor, d, consts: tuple | None) -> torch.Tensor:
    """A random group id in [0, d) from a 64-bit hash: `consts` is `mod_constants(d)` for
    scheme 2 (unsigned `h mod d`), None for scheme 1 (multiply-shift)."""
    if consts is None:
        return _mulshift(h, d)
    if len(consts) == 1:  # d a power of two: `h mod d` is its low bits
        return h & consts[0]
    return _mod_u64(h, d, *consts)


@functools.lru_cache(maxsize=4096)  # exact rational arithmetic: per d once, not per layer call
def mod_constants(d: int) -> tuple:
    """Scheme 2's reduction of `d` (Python numbers, eager path): `(d - 1,)`, the mask, when
    `d` is a power of two; else (`2**32 mod d`, `inv_lo`) for `_mod_u64`, `inv_lo` the
    largest float64 not above `(1 - 2**-48) / d` (exact rational arithmetic)."""
    if d & (d - 1) == 0:
        return (d - 1,)
    target = Fraction(2**48 - 1, 2**48 * d)
    inv_lo = float(target)  # nearest; one step down if it rounded up
    if Fraction(inv_lo) > target:
        inv_lo = math.nextafter(inv_lo, 0.0)
    return (1 << 32) % d, inv_lo


def random_ids_of_keyed(keyed: torch.Tensor, d, consts: tuple | None = None) -> torch.Tensor:
    """Random-grouping ids of `position + random_key(seed, scheme)` (int64). `d` (and the
    `consts` of scheme 2) may be 0-d tensors (fused kernels) or Python numbers."""
    return reduce_hash(hash_keyed(keyed), d, consts)


def random_group_ids(
    positions: torch.Tensor, d: int, seed: int, scheme: int = SCHEME_CURRENT
) -> torch.Tensor:
    """i.i.d. uniform group in [0, d) for each position (int64)."""
    consts = mod_constants(d) if follows_reference(scheme) else None
    return random_ids_of_keyed(positions + random_key(seed, scheme), d, consts)


def keyed_start(start: int, seed: int, stream: int = 0) -> int:
    """`start + seed_key(seed, stream)` as the int64 the hash sees (wrapping like torch)."""
    return _i64(start + seed_key(seed, stream))


def keyed_start_tensor(start: int, seed: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """`keyed_start` of a 0-d int64 tensor `seed` (a seed drawn on the device, never read
    back by the host): int64 arithmetic wraps modulo 2**64, so it is the same number."""
    return (seed + 1) * _i64(_GOLDEN) + _i64(start + stream * _STREAM_GAMMA)


def random_keyed_start(start: int, seed: int, scheme: int) -> int:
    """`start + random_key(seed, scheme)` as the int64 the hash sees."""
    return _i64(start + random_key(seed, scheme))


@functools.lru_cache(maxsize=4096)
def _mod_tensors(d: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        consts = mod_constants(d)
        if len(consts) == 1:
            return (fused.scalar(consts[0], device),)
        r32, inv_lo = consts
        return fused.scalar(r32, device), torch.full((), inv_lo, dtype=torch.float64, device=device)


@functools.lru_cache(maxsize=4096)
def _inv_tensor(d: int, device: torch.device) -> torch.Tensor:
    """`1.0 / d` as a 0-d float64 tensor (the stratified ids' `_divmod_f64`)."""
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        return torch.full((), 1.0 / d, dtype=torch.float64, device=device)


def reduce_tensors(d: int, scheme: int, device: torch.device) -> tuple:
    """The kernels' reduction constants of `d`: `()` for scheme 1; for scheme 2 the mask
    (a power-of-two `d`) or (r32, inv_lo), as 0-d tensors (`mod_constants`)."""
    if not follows_reference(scheme):
        return ()
    return _mod_tensors(d, fused.concrete_device(device))


# ---------------------------------------------------------------- fused kernels (pure)
# Scalars travel as 0-d int64 tensors: one compiled graph serves every offset and seed.
# `red` is `reduce_tensors(...)`: empty (scheme 1), the mask or (r32, inv_lo) (scheme 2);
# dynamo compiles one graph per arity.


def _k_random_ids(n: int, keyed0: torch.Tensor, d: torch.Tensor, dtype: torch.dtype, *red):
    keyed = torch.arange(n, dtype=torch.int64, device=keyed0.device) + keyed0
    return random_ids_of_keyed(keyed, d, red or None).to(dtype)


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
        out = torch.where(out >= total, _encrypt_t(out, *cipher, nkeys, alternating), out)
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
    return _divmod_f64(x, d, 1.0 / d.to(torch.float64))[1]


def _k_balanced_ids(
    n: int, start, cipher, nkeys: int, alternating: bool, total, d, rounds: int, dtype
):
    # Permute, walk and reduce mod d in one pass (values still outside [0, D) after `rounds`
    # steps get a meaningless id here and are fixed by the caller from `out`).
    out = _k_permute(n, start, cipher, nkeys, alternating, total, rounds)
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
# Scheme 2's domain is < 2 D, so fewer values leave [0, D) per encryption (measured best of
# 2..5 on the same layer).
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
            keys = tuple(_i64(mix64_int(seed + (r + 1) * _GOLDEN)) for r in range(4))
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


# ---------------------------------------------------------------- scheme 3: stratified balanced
# Position p lies in window c = p // d at offset o = p mod d; its group is
# `(a_c o + b_c) mod d`, with `b_c` the hash of `c` mod d and `a_c` a unit of d (so the map is
# a bijection of the window) picked by the top bits of another hash of `c` from a table of
# units drawn from the seed. Every window holds each group once (the last, partial one each
# group at most once), so the sizes differ by at most one, and no entry needs a walk.
_UNIT_BITS = 10  # a table of 2**10 units; indexed by the top bits of the window's hash
# The float64 quotient in `_divmod_f64` is within one of the true one while x / d < 2**51.
_STRATIFIED_MAX = 1 << 51


def stratified_ids_of(n: int, start, d, inv_d, c0, a, b) -> torch.Tensor:
    """Scheme 3 balanced ids (int64) of positions `start .. start + n - 1` from
    `stratified_args` (a pure tensor function: the fused merge kernels inline it)."""
    # `a`, `b`: the factors of the windows c0, c0 + 1, ... that the range touches.
    p = torch.arange(n, dtype=torch.int64, device=start.device) + start
    c, o = _divmod_f64(p, d, inv_d)
    w = c - c0
    return _divmod_f64(a[w] * o + b[w], d, inv_d)[1]  # a o + b < d**2 + d < 2**62


def _k_stratified_ids(n: int, start, d, inv_d, c0, a, b, dtype: torch.dtype):
    return stratified_ids_of(n, start, d, inv_d, c0, a, b).to(dtype)


_STRATIFIED_IDS = fused.kernel(_k_stratified_ids)


def stratified_keys(seed: int) -> tuple[int, int, int]:
    """(key of `b_c`, key of `a_c`'s table index, key of the unit table), as int64."""
    return tuple(_i64(mix64_int(seed + (5 + s) * _GOLDEN)) for s in range(3))


@functools.lru_cache(maxsize=256)
def unit_table(d: int, key: int) -> tuple[int, ...]:
    """`2**_UNIT_BITS` units of `d` (numbers in [0, d) coprime to it; 0 when d == 1): the
    first candidates `splitmix64(i + key) mod d`, i = 0, 1, ..., that are units. At least
    ~18 % of the residues below 2**31 are units, so a few thousand candidates suffice."""
    units: list[int] = []
    i = 0
    while len(units) < 1 << _UNIT_BITS:
        a = mix64_int(i + key) % d
        if math.gcd(a, d) == 1:
            units.append(a)
        i += 1
    return tuple(units)


@functools.lru_cache(maxsize=256)
def _unit_tensor(d: int, key: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        return torch.tensor(unit_table(d, key), dtype=torch.int64, device=device)


def stratified_args(
    total: int, d: int, seed: int, start: int, count: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """The arguments of `stratified_ids_of` for positions `start .. start + count - 1`
    (count > 0): the factors of the windows the range touches (a few per layer), computed
    here, and the range's constants as 0-d tensors."""
    if total >= _STRATIFIED_MAX:
        raise ValueError(
            f"the stratified balanced grouping needs an adapted space below 2**51 entries, "
            f"got {total}; use grouping_strategy='random'."
        )
    kb, ka, ku = stratified_keys(seed)
    device = fused.concrete_device(device)
    c0 = start // d
    with torch.no_grad():
        # One window more than the range touches: tables of one entry would be a shape
        # dynamo specialises on (one compiled graph more per kernel).
        c = torch.arange(c0, (start + count - 1) // d + 2, dtype=torch.int64, device=device)
        b = reduce_hash(mix64(c + kb), d, mod_constants(d))
        a = _unit_tensor(d, ku, device)[_lsr(mix64(c + ka), 64 - _UNIT_BITS)]
    inv_d = _inv_tensor(d, device)
    start_t, c0_t = fused.scalar(start, device), fused.scalar(c0, device)
    return start_t, fused.scalar(d, device), inv_d, c0_t, a, b


def stratified_ids_range(
    total: int,
    d: int,
    seed: int,
    start: int,
    count: int,
    device: torch.device,
    dtype: torch.dtype,
    compiled: bool,
) -> torch.Tensor:
    """Scheme 3 balanced ids of positions `start .. start + count - 1` (count > 0), by one
    fused pass (`compiled`) or the same function run eagerly."""
    kernel = _STRATIFIED_IDS if compiled else _k_stratified_ids
    return kernel(count, *stratified_args(total, d, seed, start, count, device), dtype)


@dataclass(frozen=True)
class Partition:
    """The partition of an adapted space of size `total` into `d` groups.

    `scheme`: which definitions the ids follow (module doc). `assignment`: under scheme 2,
    ``materialized`` random ids are the reference's other partition, a seeded
    ``torch.randint`` stream drawn layer by layer (`seeded_randint_ids`), not a function of
    the position; under scheme 1 it only caches the positional ids.
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
            # signed_magnitude: a function of the base weights (`signed_magnitude_ids`);
            # scheme 2 materialized random: a seeded RNG stream (`seeded_randint_ids`).
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
        if compiled:
            keyed0 = fused.scalar(random_keyed_start(start, self.seed, self.scheme), dev)
            red = reduce_tensors(self.d, self.scheme, dev)
            return _RANDOM_IDS(count, keyed0, fused.scalar(self.d, dev), dtype, *red)
        positions = torch.arange(start, start + count, dtype=torch.int64, device=dev)
        return random_group_ids(positions, self.d, self.seed, self.scheme).to(dtype)

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

        Scheme 2, as the reference computes it: `1 / sqrt(max(n_j, 1))` in fp32 (its
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


def seeded_randint_ids(numels: list[int], d: int, seed: int) -> list[torch.Tensor]:
    """Scheme 2's ``assignment="materialized"`` random ids: one CPU `torch.Generator`
    seeded with `seed`, one int32 `torch.randint(0, d, (n,))` draw per layer in layer order
    (the reference's `_assign_random_indices_streaming`). A different partition from the
    stateless hash, and reproducible only in this order and on the CPU generator, which is
    why it is drawn there and then moved to the layer's device."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return [torch.randint(0, d, (n,), generator=generator, dtype=torch.int32) for n in numels]


# ---------------------------------------------------------------- ablation groupings / scopes
_BLOCK_STREAM = 11  # separates per-block seeds from every other use of the hash


def block_seed(seed: int, block: int, scheme: int = SCHEME_CURRENT) -> int:
    """The seed of block `block` (its ordinal in natural order) under
    `partition_scope="transformer_block"`. Scheme 2: `proj_seed + block`, as the reference
    does. Scheme 1: the hash of the block index under `seed`."""
    if follows_reference(scheme):
        return seed + block
    h = hash_positions(torch.tensor([block], dtype=torch.int64), seed, stream=_BLOCK_STREAM)
    return int(h[0])


def split_evenly(d: int, parts: int) -> list[int]:
    """`d` split into `parts` shares; the first `d mod parts` get one more."""
    base, extra = divmod(d, parts)
    return [base + (1 if b < extra else 0) for b in range(parts)]


def signed_magnitude_ids(
    values: torch.Tensor, d: int, scheme: int = SCHEME_CURRENT
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ids (int64) and group sizes of the ``signed_magnitude`` grouping.

    Scheme 2 follows the reference exactly (`_signed_magnitude_reference`); what follows
    describes scheme 1.

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
    if follows_reference(scheme):
        return _signed_magnitude_reference(values, d)
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


def _signed_magnitude_reference(values: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scheme 2's ``signed_magnitude``: the reference's rules, on the CPU in fp32 as it runs
    them (its ``grouping.py``).

    Pools by sign (`not w >= 0` is negative); the negative pool gets
    `round(d * n_neg / N)` groups (Python's float `round`, half to even), at least one and at
    most `d - 1` when both pools exist, the rest go to the non-negative pool (ids after the
    negative pool's); one pool alone gets all `d`, `d = 1` puts everything in group 0. A
    pool of `n` entries sorted by the fp32 key `|w| * (n + 1) + index / (n + 1)` (index in
    the whole space; stable) is cut at `g * n // k`: the entry of rank `r` is in bin
    `((r + 1) k - 1) // n`, the inverse of that cut. A pool with fewer entries than groups
    gives entry `r` of it group `r`.
    """
    values = values.detach().reshape(-1).float().cpu()
    total = values.numel()
    if d > total:
        raise ValueError(f"signed_magnitude: d={d} is larger than the {total} entries to group.")
    magnitudes = values.abs()
    nonneg = values >= 0
    neg_idx = torch.nonzero(~nonneg, as_tuple=True)[0]
    pos_idx = torch.nonzero(nonneg, as_tuple=True)[0]
    n_neg, n_pos = neg_idx.numel(), pos_idx.numel()

    def split(indices: torch.Tensor, k: int) -> torch.Tensor:
        n = indices.numel()
        if k > n:
            return torch.arange(n, dtype=torch.int64)
        keys = magnitudes[indices] * (n + 1) + indices.float() / (n + 1)
        order = torch.argsort(keys, stable=True)
        out = torch.empty(n, dtype=torch.int64)
        out[order] = ((torch.arange(n, dtype=torch.int64) + 1) * k - 1) // n
        return out

    if n_neg == 0 or n_pos == 0:
        ids = split(pos_idx if n_neg == 0 else neg_idx, d)
    elif d == 1:
        ids = torch.zeros(total, dtype=torch.int64)
    else:
        k_neg = round(d * n_neg / total)
        if k_neg < 1:
            k_neg = 1
        if d - k_neg < 1:
            k_neg = d - 1
        ids = torch.empty(total, dtype=torch.int64)
        ids[neg_idx] = split(neg_idx, k_neg)
        ids[pos_idx] = split(pos_idx, d - k_neg) + k_neg
    return ids, torch.bincount(ids, minlength=d)


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
