"""The Fastfood projection: the dense structured random baseline of the GPart ablations.

`P` maps `theta` (length `d`) to the `D` adapted entries. `theta` is zero-padded to
`L` (the next power of two >= `d`); the adapted space is covered by `ceil(D/L)` blocks of
`L` rows, block `k` being

    c * H G_k Pi_k H B_k

with `H` the (unnormalised, symmetric) Walsh-Hadamard matrix, `B_k` random signs, `Pi_k` a
random permutation and `G_k` i.i.d. standard Gaussians (Le, Sarlos & Smola, "Fastfood",
ICML 2013; the structured projection of Li et al., "Measuring the intrinsic dimension",
ICLR 2018). Every row `r` of `H G Pi H B` satisfies `E[m_r m_r^T] = L I`, so
`c = 1/sqrt(D L)` gives `E[P^T P] = I`: isometric in expectation, not exactly (unlike the
partition). The scale `c` (times the anisotropic gain when ``isometric=False``) is folded
into the per-entry `scales` of `theta`, so the map itself has no scale.

`B`, `G` and `Pi` are functions of the seed (a counter-based hash of the row's position,
like the partition), never saved. Each adapted layer generates those of the blocks
covering its positions once, at injection, and keeps them as non-persistent buffers
(`FastfoodCache`: int8 signs, fp32 Gaussians, int16/int32 permutations, 7-9 bytes per
covered entry): generating them (hashes, Box-Muller, a sort per block) costs several times
the transforms themselves, so regenerating on every forward and backward made the baseline
look slower than it is (CHANGELOG.md, "Fastfood's cached factors"). Without a cache (e.g.
in float64) they are regenerated, with the same numbers. The saved adapter stays exactly
`d` numbers. A layer computes only the blocks that cover its positions; the transpose (for
`theta`'s gradient) is exact: `B H Pi^T G H`. Cost per layer: two fast Walsh-Hadamard
transforms, `O(n log L)` for `n` entries.

Two definitions of `B`, `G`, `Pi` and the gain (``GPartConfig.scheme_version``,
``gpart.tuner.schemes``):

* **the reference's**, schemes 2 and 3 (SamsungLabs/GPart,
  ``peft/tuners/gpart/fastfood.py``; the default): one CPU `torch.Generator` seeded with
  `proj_seed` draws, block after block, `B = 2 randint(0, 2) - 1` (int8), `G = randn`
  (fp32) and `Pi = randperm` (int32); the non-isometric gains are shuffled by a `randperm`
  of another generator seeded with `proj_seed + 0x6A09E667F3BCC909` (mod `2**63 - 1`) and
  multiply `theta` itself, and `c` multiplies the transformed result, in the reference's
  order of operations. The draws are sequential, so the table of all `ceil(D/L)` blocks is
  made once per adapted space (on the CPU, 9 bytes per covered entry, like the
  reference's) and each layer keeps its rows.
* **scheme 1, this project's earlier definition**: `B`, `G`, `Pi` are counter-based hashes
  of the row's position (any block can be generated alone, on any device); the Gaussians
  come from a Box-Muller transform in float64 (`log`, `cos`), which can differ in the last
  bit on another device; the gains stay in decreasing order and `c` is folded into them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from gpart.tuner.hashing import hash_positions, lsr
from gpart.tuner.schemes import SCHEME_CURRENT, follows_reference

# Streams of the hash (the partition uses 0, the Feistel keys 1-4, dropout 7, blocks 11).
_SIGN_STREAM = 12
_GAUSS_STREAM_1 = 13
_GAUSS_STREAM_2 = 14
_PERM_STREAM = 15
_TWO_POW_M53 = 2.0**-53
# isometric=False: theta is multiplied by gains spaced geometrically from 2 to 1/2 (a 4:1
# spread), normalised to mean square 1, so the map keeps E||P theta||^2 = ||theta||^2 only
# on average over directions: the non-isometric control.
_GAIN_SPREAD = 4.0
# The reference's seed offset of the gains' shuffle (the first 64 bits of sqrt(2)'s
# fraction, SHA-2's first constant) and torch's seed range.
_GAIN_SEED_OFFSET = 0x6A09E667F3BCC909
_TORCH_SEED_MODULUS = (1 << 63) - 1


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform along the last dimension (a power of two):
    `x @ H` with `H` the Sylvester Hadamard matrix (symmetric, `H H = L I`)."""
    shape = x.shape
    n = shape[-1]
    x = x.reshape(-1, n)
    h = 1
    while h < n:
        v = x.view(-1, n // (2 * h), 2, h)
        a, b = v[:, :, 0, :], v[:, :, 1, :]
        x = torch.stack((a + b, a - b), dim=2).view(-1, n)
        h *= 2
    return x.view(shape)


@dataclass(frozen=True)
class FastfoodCache:
    """`B`, `G`, `Pi` of blocks `k0 .. k0 + nb - 1`, as a layer keeps them (see module doc)."""

    k0: int
    sign: torch.Tensor  # (nb, L) int8, +-1
    gauss: torch.Tensor  # (nb, L), the dtype they were cast to
    perm: torch.Tensor  # (nb, L) int16 when L <= 2**15, else int32

    def rows(self, k0: int, nb: int, dtype: torch.dtype):
        """(sign, gauss, perm as int64) of blocks `k0 ..`, or None when not covered here."""
        lo = k0 - self.k0
        if lo < 0 or lo + nb > self.sign.shape[0] or self.gauss.dtype != dtype:
            return None
        return (
            self.sign[lo : lo + nb].to(dtype),
            self.gauss[lo : lo + nb],
            self.perm[lo : lo + nb].to(torch.int64),
        )


def _uniform53(h: torch.Tensor) -> torch.Tensor:
    """The top 53 bits of a 64-bit hash as a float64 in [0, 1)."""
    return lsr(h, 11).to(torch.float64) * _TWO_POW_M53


@dataclass(frozen=True)
class FastfoodProjection:
    """The Fastfood map of an adapted space of `total` entries from `d` parameters."""

    total: int
    d: int
    seed: int
    scheme: int = SCHEME_CURRENT

    def __post_init__(self) -> None:
        if self.d <= 0 or self.total <= 0:
            raise ValueError(f"Fastfood needs d, D > 0, got d={self.d}, D={self.total}.")

    @property
    def _reference(self) -> bool:
        return follows_reference(self.scheme)

    @property
    def _c(self) -> float:
        return 1.0 / math.sqrt(self.total * self.length)

    @property
    def length(self) -> int:
        """`L`: the next power of two >= d."""
        return 1 << max(0, (self.d - 1).bit_length())

    def scales(
        self, isometric: bool, device: torch.device | str | None = None, sizes=None
    ) -> torch.Tensor:
        """Per-entry factor on `theta` (fp32). The reference's: the anisotropic gain when not
        `isometric`, else 1 (`c` is applied after the transforms, as in the reference).
        Scheme 1: `c = 1/sqrt(D L)`, times the gain. `sizes` is ignored (no groups)."""
        if self._reference:
            if isometric:
                return torch.ones(self.d, dtype=torch.float32, device=device)
            return _reference_gains(self.d, self.seed).to(device)
        c = self._c
        if isometric or self.d == 1:
            return torch.full((self.d,), c, dtype=torch.float32, device=device)
        exps = torch.linspace(0.5, -0.5, self.d, dtype=torch.float64, device=device)
        gain = _GAIN_SPREAD**exps
        gain = gain / gain.pow(2).mean().sqrt()
        return (gain * c).to(torch.float32)

    def _randoms(self, k0: int, nb: int, device: torch.device, dtype: torch.dtype):
        """(signs B, Gaussians G, permutations Pi) of blocks `k0 .. k0 + nb - 1`, (nb, L)."""
        n = self.length
        if self._reference:
            sign, gauss, perm = _reference_table(self.seed, -(-self.total // n), n)
            rows = slice(k0, k0 + nb)
            return (
                sign[rows].to(device=device, dtype=dtype),
                gauss[rows].to(device=device, dtype=dtype),
                perm[rows].to(device=device, dtype=torch.int64),
            )
        q = torch.arange(k0 * n, (k0 + nb) * n, dtype=torch.int64, device=device)
        sign = 1 - 2 * (hash_positions(q, self.seed, _SIGN_STREAM) & 1)
        u1 = 1.0 - _uniform53(hash_positions(q, self.seed, _GAUSS_STREAM_1))  # (0, 1]
        u2 = _uniform53(hash_positions(q, self.seed, _GAUSS_STREAM_2))
        gauss = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
        keys = hash_positions(q, self.seed, _PERM_STREAM).view(nb, n)
        perm = torch.sort(keys, dim=1, stable=True).indices
        return sign.view(nb, n).to(dtype), gauss.view(nb, n).to(dtype), perm

    def _blocks(self, start: int, count: int) -> tuple[int, int, int]:
        n = self.length
        k0 = start // n
        nb = (start + count - 1) // n - k0 + 1
        return k0, nb, start - k0 * n

    def cache(
        self, start: int, count: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> FastfoodCache | None:
        """The randoms of the blocks covering entries `start .. start + count - 1`, compact
        (what a layer keeps instead of regenerating them per call); None when count is 0."""
        if count == 0:
            return None
        k0, nb, _ = self._blocks(start, count)
        sign, gauss, perm = self._randoms(k0, nb, device, dtype)
        perm_dtype = torch.int16 if self.length <= 1 << 15 else torch.int32
        return FastfoodCache(k0, sign.to(torch.int8), gauss, perm.to(perm_dtype))

    def _randoms_for(self, k0: int, nb: int, like: torch.Tensor, cache: FastfoodCache | None):
        rows = cache.rows(k0, nb, like.dtype) if cache is not None else None
        if rows is not None and rows[0].device == like.device:
            return rows
        return self._randoms(k0, nb, like.device, like.dtype)

    def apply(
        self, coef: torch.Tensor, start: int, count: int, cache: FastfoodCache | None = None
    ) -> torch.Tensor:
        """Entries `start .. start + count - 1` of `P coef` (coef: the scaled theta, (d,)).
        `cache`: the layer's randoms (`cache()`), else they are regenerated."""
        if count == 0:
            return coef.new_zeros(0)
        k0, nb, skip = self._blocks(start, count)
        sign, gauss, perm = self._randoms_for(k0, nb, coef, cache)
        x = torch.zeros(self.length, dtype=coef.dtype, device=coef.device)
        x[: self.d] = coef
        x = fwht(sign * x)  # H B theta, per block
        x = torch.gather(x, 1, perm)  # Pi
        x = fwht(x * gauss)  # H G
        if self._reference:
            x = x * self._c
        return x.reshape(-1)[skip : skip + count]

    def transpose(
        self, grad: torch.Tensor, start: int, cache: FastfoodCache | None = None
    ) -> torch.Tensor:
        """`P^T` of a gradient over entries `start .. start + grad.numel() - 1`, (d,)."""
        count = grad.numel()
        if count == 0:
            return grad.new_zeros(self.d)
        k0, nb, skip = self._blocks(start, count)
        sign, gauss, perm = self._randoms_for(k0, nb, grad, cache)
        y = grad.new_zeros(nb * self.length)
        y[skip : skip + count] = grad.reshape(-1)
        y = fwht(y.view(nb, self.length)) * gauss  # G H
        z = torch.zeros_like(y).scatter_(1, perm, y)  # Pi^T
        z = fwht(z) * sign  # B H
        if self._reference:
            z = z * self._c
        return z.sum(0)[: self.d]


@functools.lru_cache(maxsize=2)
def _reference_table(seed: int, blocks: int, length: int):
    """The reference's `B`, `G`, `Pi` of every block, (blocks, L) on the CPU: int8, fp32, int32,
    drawn block after block from one generator as the reference draws them."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    sign = torch.empty((blocks, length), dtype=torch.int8)
    gauss = torch.empty((blocks, length), dtype=torch.float32)
    perm = torch.empty((blocks, length), dtype=torch.int32)
    for k in range(blocks):
        sign[k] = torch.randint(0, 2, (length,), generator=generator, dtype=torch.int8) * 2 - 1
        gauss[k] = torch.randn(length, generator=generator, dtype=torch.float32)
        perm[k] = torch.randperm(length, generator=generator, dtype=torch.int32)
    return sign, gauss, perm


def release_reference_tables() -> None:
    """Forget the whole-model tables `_reference_table` keeps while the layers take their
    rows: once each layer holds its own (int8 signs, int16/int32 permutations), the table's
    signs and permutations would be 5 more bytes per adapted entry kept for nothing (about
    1.8 GB for the 360M entries of Qwen2-0.5B's linear layers). A layer without its rows
    regenerates them."""
    _reference_table.cache_clear()


def _reference_gains(d: int, seed: int) -> torch.Tensor:
    """The reference's non-isometric gains (fp32, RMS one, max/min exactly 4): log-spaced in
    float64, normalised, then shuffled by a generator of their own seed."""
    if d < 2:
        raise ValueError("Fastfood with isometric=False needs d >= 2 (its gains have a spread).")
    half = 0.5 * math.log(_GAIN_SPREAD)
    gains = torch.linspace(-half, half, d, dtype=torch.float64).exp_()
    gains.div_(gains.square().mean().sqrt())
    generator = torch.Generator(device="cpu")
    generator.manual_seed((int(seed) + _GAIN_SEED_OFFSET) % _TORCH_SEED_MODULUS)
    return gains[torch.randperm(d, generator=generator)].float()
