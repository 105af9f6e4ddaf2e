"""The groupings under the reference's definitions: which of the `d` groups an entry is in.

Every adapted entry has a position `p` in the global adapted space `[0, D)` (modules in
model order, each weight in storage order, then its bias when adapted). Its group is, by
``GPartConfig.grouping_strategy``:

* ``random``: ``splitmix64(p + proj_seed + 0x9E3779B97F4A7C15)`` read as an unsigned 64-bit
  number, ``mod d`` (the reference's ``grouping.py``; the hash and its exact reduction are
  ``gpart.tuner.hashing``). Scheme 1 keys and reduces the same hash its own way
  (`random_key`, ``hashing.reduce_hash``). With ``assignment_backend="materialized"`` the
  reference draws another partition, a seeded ``torch.randint`` stream (`seeded_randint_ids`).
* ``balanced``, scheme 3, *stratified* (this project's extension: the reference has no
  balanced grouping): position `p` lies in window `c = p // d` at offset `o = p mod d`, and
  its group is `(a_c o + b_c) mod d`, where `b_c = splitmix64(c + k_b) mod d` and `a_c` is
  entry `splitmix64(c + k_a) >> 54` of a table of 1024 units of `d` (`unit_table`; keys
  from `stratified_keys`). Each window is a bijection onto the groups, so every group holds
  exactly one entry of every full window and the sizes differ by at most one; the cost is
  two exact float64 reductions per entry and no cycle walk. It is not a uniformly random
  balanced partition: two entries of one window are never in one group, and within a
  window the groups of entries `k` apart differ by `a_c k`. Schemes 1 and 2's balanced ids
  are a Feistel permutation (``gpart.tuner.legacy``).
* ``signed_magnitude``: bins of the base weights by sign and magnitude
  (`signed_magnitude_ids`), a function of the weights rather than of the position.

For large ranges the same integer arithmetic runs as fused `torch.compile` kernels
(`gpart.tuner.fused`); they compute bit-identical ids (integer ops are exact), so the fused
and eager paths are interchangeable.
"""

from __future__ import annotations

import functools
import math

import torch

import gpart.tuner.fused as fused
import gpart.tuner.legacy as legacy
from gpart.tuner.hashing import (
    GOLDEN,
    as_int64,
    divmod_f64,
    hash_keyed,
    lsr,
    mix64,
    mix64_int,
    mod_constants,
    reduce_hash,
    reduce_tensors,
    seed_key,
)
from gpart.tuner.schemes import SCHEME_CURRENT, follows_reference


# ---------------------------------------------------------------- random
def random_key(seed: int, scheme: int) -> int:
    """The additive key of the ``random`` grouping: `p + key` is what the hash sees."""
    if follows_reference(scheme):
        return as_int64(seed + GOLDEN)  # the reference: proj_seed + the splitmix64 gamma
    return seed_key(seed)


def random_keyed_start(start: int, seed: int, scheme: int) -> int:
    """`start + random_key(seed, scheme)` as the int64 the hash sees."""
    return as_int64(start + random_key(seed, scheme))


def random_ids_of_keyed(keyed: torch.Tensor, d, consts: tuple | None = None) -> torch.Tensor:
    """Random-grouping ids of `position + random_key(seed, scheme)` (int64). `d` (and the
    `consts` of the reference's reduction) may be 0-d tensors (fused kernels) or Python
    numbers."""
    return reduce_hash(hash_keyed(keyed), d, consts)


def random_group_ids(
    positions: torch.Tensor, d: int, seed: int, scheme: int = SCHEME_CURRENT
) -> torch.Tensor:
    """i.i.d. uniform group in [0, d) for each position (int64)."""
    consts = mod_constants(d) if follows_reference(scheme) else None
    return random_ids_of_keyed(positions + random_key(seed, scheme), d, consts)


# Scalars travel as 0-d int64 tensors: one compiled graph serves every offset and seed.
# `red` is `reduce_tensors(...)`: empty (scheme 1), the mask or (r32, inv_lo) (the
# reference's reduction); dynamo compiles one graph per arity.
def _k_random_ids(n: int, keyed0: torch.Tensor, d: torch.Tensor, dtype: torch.dtype, *red):
    keyed = torch.arange(n, dtype=torch.int64, device=keyed0.device) + keyed0
    return random_ids_of_keyed(keyed, d, red or None).to(dtype)


_RANDOM_IDS = fused.kernel(_k_random_ids)


def random_ids_range(
    d: int,
    seed: int,
    scheme: int,
    start: int,
    count: int,
    device: torch.device,
    dtype: torch.dtype,
    compiled: bool,
) -> torch.Tensor:
    """Random-grouping ids of positions `start .. start + count - 1`, by one fused pass
    (`compiled`) or eagerly (the same numbers)."""
    if compiled:
        keyed0 = fused.scalar(random_keyed_start(start, seed, scheme), device)
        red = reduce_tensors(d, scheme, device)
        return _RANDOM_IDS(count, keyed0, fused.scalar(d, device), dtype, *red)
    positions = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return random_group_ids(positions, d, seed, scheme).to(dtype)


def seeded_randint_ids(numels: list[int], d: int, seed: int) -> list[torch.Tensor]:
    """The reference's ``assignment="materialized"`` random ids: one CPU `torch.Generator`
    seeded with `seed`, one int32 `torch.randint(0, d, (n,))` draw per layer in layer order
    (the reference's `_assign_random_indices_streaming`). A different partition from the
    stateless hash, and reproducible only in this order and on the CPU generator, which is
    why it is drawn there and then moved to the layer's device."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return [torch.randint(0, d, (n,), generator=generator, dtype=torch.int32) for n in numels]


# ---------------------------------------------------------------- balanced, scheme 3: stratified
# `b_c` is the hash of window `c` mod d and `a_c` a unit of d (so the map is a bijection of
# the window) picked by the top bits of another hash of `c` from a table of units drawn from
# the seed. Every window holds each group once (the last, partial one each group at most
# once), so the sizes differ by at most one, and no entry needs a walk.
_UNIT_BITS = 10  # a table of 2**10 units; indexed by the top bits of the window's hash
# The float64 quotient in `divmod_f64` is within one of the true one while x / d < 2**51.
_STRATIFIED_MAX = 1 << 51


@functools.lru_cache(maxsize=4096)
def _inv_tensor(d: int, device: torch.device) -> torch.Tensor:
    """`1.0 / d` as a 0-d float64 tensor (the stratified ids' `divmod_f64`)."""
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        return torch.full((), 1.0 / d, dtype=torch.float64, device=device)


def stratified_ids_of(n: int, start, d, inv_d, c0, a, b) -> torch.Tensor:
    """Scheme 3 balanced ids (int64) of positions `start .. start + n - 1` from
    `stratified_args` (a pure tensor function: the fused merge kernels inline it)."""
    # `a`, `b`: the factors of the windows c0, c0 + 1, ... that the range touches.
    p = torch.arange(n, dtype=torch.int64, device=start.device) + start
    c, o = divmod_f64(p, d, inv_d)
    w = c - c0
    return divmod_f64(a[w] * o + b[w], d, inv_d)[1]  # a o + b < d**2 + d < 2**62


def _k_stratified_ids(n: int, start, d, inv_d, c0, a, b, dtype: torch.dtype):
    return stratified_ids_of(n, start, d, inv_d, c0, a, b).to(dtype)


_STRATIFIED_IDS = fused.kernel(_k_stratified_ids)


def stratified_keys(seed: int) -> tuple[int, int, int]:
    """(key of `b_c`, key of `a_c`'s table index, key of the unit table), as int64."""
    return tuple(as_int64(mix64_int(seed + (5 + s) * GOLDEN)) for s in range(3))


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
        a = _unit_tensor(d, ku, device)[lsr(mix64(c + ka), 64 - _UNIT_BITS)]
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


# ---------------------------------------------------------------- signed_magnitude
def signed_magnitude_ids(
    values: torch.Tensor, d: int, scheme: int = SCHEME_CURRENT
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ids (int64) and group sizes of the ``signed_magnitude`` grouping.

    The reference's rules, on the CPU in fp32 as it runs them (its ``grouping.py``); scheme 1's
    are ``legacy.signed_magnitude_ids``. Pools by sign (`not w >= 0` is negative); the
    negative pool gets `round(d * n_neg / N)` groups (Python's float `round`, half to even),
    at least one and at most `d - 1` when both pools exist, the rest go to the non-negative
    pool (ids after the negative pool's); one pool alone gets all `d`, `d = 1` puts
    everything in group 0. A pool of `n` entries sorted by the fp32 key
    `|w| * (n + 1) + index / (n + 1)` (index in the whole space; stable) is cut at
    `g * n // k`: the entry of rank `r` is in bin `((r + 1) k - 1) // n`, the inverse of that
    cut. A pool with fewer entries than groups gives entry `r` of it group `r`.

    Args:
        values: the base weights (and adapted biases) in adapted-space order, 1-D.
        d: number of groups.
        scheme: ``GPartConfig.scheme_version`` (``gpart.tuner.schemes``).

    Returns:
        (ids, sizes): ids in `[0, d)` for every entry, `n_j` for every group.

    Raises:
        ValueError: when `d > N` (scheme 1 also when `d < 2` while both signs occur).
    """
    if not follows_reference(scheme):
        return legacy.signed_magnitude_ids(values, d)
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
