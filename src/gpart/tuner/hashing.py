"""The hash behind every group id: splitmix64 on int64 tensors, its keys, and `mod d`.

Every id is a pure function of a seed and a position, computed with plain int64 torch ops,
so it is identical on every device, chunk size and process and never has to be stored.
int64 multiplication wraps modulo 2**64 on CPU and CUDA, which is exactly the unsigned
arithmetic the splitmix64 finaliser is defined in (right shifts are made logical with a
mask, `lsr`).

A hash becomes a group in `[0, d)` by one of two reductions (`reduce_hash`):

* the reference's definitions (``gpart.tuner.schemes``): the hash read as an unsigned 64-bit
  number, ``mod d``, exactly and without an integer division (which does not vectorise):
  `h = hi 2**32 + lo`, `t = hi (2**32 mod d) + lo < 2**63` has the same residue, and
  `floor(t / d)` is found through float64 from below within one, then corrected once
  (`_mod_u64`); a power-of-two `d` takes the hash's low bits, which is the same number;
* scheme 1: the multiply-shift `((h & 0xFFFFFFFF) * d) >> 32` (`_mulshift`).

Keys: the reference keys a position by `proj_seed + 0x9E3779B97F4A7C15` (the grouping's
own key lives in ``gpart.tuner.groupings``); this project's other uses of the hash (scheme
1's ids, dropout masks, block seeds, Fastfood's factors) key it by `seed_key(seed, stream)`,
one stream per use, so that they never share a hash.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

import gpart.tuner.fused as fused
from gpart.tuner.schemes import follows_reference

_MASK64 = (1 << 64) - 1


def as_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit constant as the signed int64 torch stores."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


# The splitmix64 gamma (2**64 / the golden ratio): the reference's key offset, and the step
# between this project's keys of consecutive seeds.
GOLDEN = 0x9E3779B97F4A7C15
_M1 = as_int64(0xBF58476D1CE4E5B9)
_M2 = as_int64(0x94D049BB133111EB)
_LOW32 = 0xFFFFFFFF
_STREAM_GAMMA = 0xD1B54A32D192ED03  # separates `seed_key`'s streams


def lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (a bijection of 64-bit words)."""
    x = x ^ lsr(x, 30)
    x = x * _M1
    x = x ^ lsr(x, 27)
    x = x * _M2
    return x ^ lsr(x, 31)


def mix64_int(x: int) -> int:
    """The splitmix64 finaliser on one unsigned Python int (for constants)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def seed_key(seed: int, stream: int = 0) -> int:
    """The additive key of a seed in this project's own streams (stream separates unrelated
    uses, e.g. dropout; stream 0 is scheme 1's random grouping)."""
    return as_int64((seed + 1) * GOLDEN + stream * _STREAM_GAMMA)


def hash_positions(positions: torch.Tensor, seed: int, stream: int = 0) -> torch.Tensor:
    """64-bit hash of int64 positions under a seed."""
    return hash_keyed(positions + seed_key(seed, stream))


def hash_keyed(keyed: torch.Tensor) -> torch.Tensor:
    """The hash of `position + key` (already keyed)."""
    return mix64(keyed)


def keyed_start(start: int, seed: int, stream: int = 0) -> int:
    """`start + seed_key(seed, stream)` as the int64 the hash sees (wrapping like torch)."""
    return as_int64(start + seed_key(seed, stream))


def keyed_start_tensor(start: int, seed: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """`keyed_start` of a 0-d int64 tensor `seed` (a seed drawn on the device, never read
    back by the host): int64 arithmetic wraps modulo 2**64, so it is the same number."""
    return (seed + 1) * as_int64(GOLDEN) + as_int64(start + stream * _STREAM_GAMMA)


# ---------------------------------------------------------------- hash -> [0, d)
def _mulshift(h: torch.Tensor, d: int | torch.Tensor) -> torch.Tensor:
    """Scheme 1: the hash's low 32 bits mapped to [0, d) by a multiply-shift."""
    return ((h & _LOW32) * d) >> 32


# AVX2 MASKS. Every integer mask that a fused kernel selects with (`torch.where`) comes from
# `<`, `>` or `==`, never from `>=`, `<=` or `!=`: inductor's CPU code built for AVX2 (a CPU
# without AVX-512, or ``ATEN_CPU_CAPABILITY=avx2``) selects the wrong branch of a
# `torch.where` with integer branches whose int64 or int32 mask comes from those three
# (torch 2.15: scheme 3's fused ids came out negative; float branches, as in the dropout
# scale, came out right, and are written the same way). So `x >= b` is written `x < b`
# with the branches swapped. On AVX2 the kernels now run as scalar loops anyway
# (`fused.cpu_code_options`); the rule covers any other way to AVX2 vector code.
# `tests/test_fused.py::test_fused_kernels_match_eager_in_avx2_code` runs the kernels as
# AVX2 code.


def divmod_f64(x, d, inv_d):
    """`(x // d, x % d)` for 0 <= x, x / d < 2**51, 0 < d < 2**31, without an integer
    division: the float64 quotient `x * inv_d` has a relative error below 3 2**-53, so its
    truncation is the true quotient or one off, corrected once each way."""
    q = (x.to(torch.float64) * inv_d).to(torch.int64)
    r = x - q * d
    low = r < 0
    q, r = torch.where(low, q - 1, q), torch.where(low, r + d, r)
    fits = r < d  # (not `r >= d`: AVX2 MASKS above)
    return torch.where(fits, q, q + 1), torch.where(fits, r, r - d)


def _mod_u64(h: torch.Tensor, d, r32, inv_lo) -> torch.Tensor:
    """The reference's reduction: `h` read as an unsigned 64-bit number, `mod d`
    (0 < d < 2**31), exactly.

    `r32 = 2**32 mod d` and `inv_lo`, a float64 just below `1 / d` (`mod_constants`). With
    `h = hi 2**32 + lo`, `t = hi r32 + lo` is congruent to `h` and `< 2**32 d + 2**32 <=
    2**63`. `inv_lo` is `1 / d` lowered by a relative 2**-48, more than the float64 rounding
    of `t` and of the product (< 3 2**-53) can take back, so the truncated quotient is never
    above `floor(t / d)`; and at most 2**33 2**-47.9 < 1 below `t / d`, so never more than one
    below it. One comparison then corrects it (libdivide's one-sided correction, with a
    float64 reciprocal: int64 division does not vectorise)."""
    t = lsr(h, 32) * r32 + (h & _LOW32)
    q = (t.to(torch.float64) * inv_lo).to(torch.int64)
    r = t - q * d
    return torch.where(r < d, r, r - d)  # (not `r >= d`: AVX2 MASKS above)


def reduce_hash(h: torch.Tensor, d, consts: tuple | None) -> torch.Tensor:
    """A random group id in [0, d) from a 64-bit hash: `consts` is `mod_constants(d)` under
    the reference's definitions (unsigned `h mod d`), None for scheme 1 (multiply-shift)."""
    if consts is None:
        return _mulshift(h, d)
    if len(consts) == 1:  # d a power of two: `h mod d` is its low bits
        return h & consts[0]
    return _mod_u64(h, d, *consts)


@functools.lru_cache(maxsize=4096)  # exact rational arithmetic: per d once, not per layer call
def mod_constants(d: int) -> tuple:
    """The reference's reduction of `d` (Python numbers, eager path): `(d - 1,)`, the mask,
    when `d` is a power of two; else (`2**32 mod d`, `inv_lo`) for `_mod_u64`, `inv_lo` the
    largest float64 not above `(1 - 2**-48) / d` (exact rational arithmetic)."""
    if d & (d - 1) == 0:
        return (d - 1,)
    target = Fraction(2**48 - 1, 2**48 * d)
    inv_lo = float(target)  # nearest; one step down if it rounded up
    if Fraction(inv_lo) > target:
        inv_lo = math.nextafter(inv_lo, 0.0)
    return (1 << 32) % d, inv_lo


@functools.lru_cache(maxsize=4096)
def _mod_tensors(d: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode(False), torch.no_grad():  # see fused.scalar
        consts = mod_constants(d)
        if len(consts) == 1:
            return (fused.scalar(consts[0], device),)
        r32, inv_lo = consts
        return fused.scalar(r32, device), torch.full((), inv_lo, dtype=torch.float64, device=device)


def reduce_tensors(d: int, scheme: int, device: torch.device) -> tuple:
    """The kernels' reduction constants of `d`: `()` for scheme 1; under the reference's
    definitions the mask (a power-of-two `d`) or (r32, inv_lo), as 0-d tensors
    (`mod_constants`)."""
    if not follows_reference(scheme):
        return ()
    return _mod_tensors(d, fused.concrete_device(device))
