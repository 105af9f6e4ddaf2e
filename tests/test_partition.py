"""The partition is a pure, pinned function of (seed, position): never stored, never drifting."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from gpart.tuner.hashing import hash_positions, mod_constants, reduce_hash
from gpart.tuner.partition import Partition

M64 = (1 << 64) - 1


def _reference_hash(p: int, seed: int) -> int:
    """splitmix64 finaliser in unsigned Python ints: what the int64 torch code must equal."""
    x = (p + (seed + 1) * 0x9E3779B97F4A7C15) & M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def test_torch_hash_equals_unsigned_reference_including_huge_positions():
    positions = [0, 1, 2, 12345, 2**31 + 7, 2**40 + 3, 2**62 - 1]
    got = hash_positions(torch.tensor(positions, dtype=torch.int64), seed=42)
    for p, h in zip(positions, got.tolist(), strict=True):
        assert h & M64 == _reference_hash(p, 42)


GOLDEN_RANDOM = [188, 347, 196, 153, 937, 318, 948, 36, 233, 558, 222, 359]
GOLDEN_BALANCED = [1, 1, 1, 4, 3, 6, 3, 1, 0, 5, 2, 5]


@pytest.mark.parametrize("d", [3, 7, 1_000_003, 2**30 + 1, 2**31 - 1, 2**17, 1])
def test_unsigned_mod_is_exact_where_its_float_quotient_is_tightest(d):
    """Scheme 2's `h mod d` against Python ints on the hashes where its float64 quotient is
    most likely off: `t = hi (2**32 mod d) + lo` a multiple of d or one either side, at the
    largest `hi` (so the largest `t`), and hashes with the sign bit set."""
    r32 = (1 << 32) % d
    hashes = []
    for hi in (0, 1, 2**31, 2**32 - 2, 2**32 - 1):
        base = hi * r32
        top = (base + 2**32 - 1) // d * d  # the largest multiple of d that lo can reach
        for t in (top - 1, top, top + 1, base, base + 2**32 - 1):
            if 0 <= t - base < 2**32:
                hashes.append((hi << 32) | (t - base))
    signed = [h - (1 << 64) if h >= 1 << 63 else h for h in hashes]
    got = reduce_hash(torch.tensor(signed, dtype=torch.int64), d, mod_constants(d))
    assert got.tolist() == [h % d for h in hashes]


def test_golden_group_ids_random_scheme1():
    part = Partition(total=10**6, d=1000, seed=42, grouping="random", scheme=1)
    assert part.group_ids(0, 12).tolist() == GOLDEN_RANDOM
    assert part.group_ids(987654, 5).tolist() == [781, 958, 418, 845, 719]
    other_seed = Partition(total=10**6, d=1000, seed=7, grouping="random", scheme=1)
    assert other_seed.group_ids(0, 8).tolist() == [785, 70, 960, 861, 343, 25, 333, 238]


def test_golden_group_ids_balanced_and_far_positions_scheme1():
    part = Partition(total=1000, d=7, seed=42, grouping="balanced", scheme=1)
    assert part.group_ids(0, 12).tolist() == GOLDEN_BALANCED
    big = Partition(total=3 * 2**33, d=23040, seed=42, grouping="random", scheme=1)
    assert big.group_ids(2**34 + 5, 4).tolist() == [9967, 10880, 10966, 1403]


@pytest.mark.parametrize("grouping", ["random", "balanced"])
def test_ids_do_not_depend_on_chunking(grouping):
    part = Partition(total=5000, d=37, seed=3, grouping=grouping)
    whole = part.group_ids(0, 5000)
    pieces = torch.cat([part.group_ids(s, min(613, 5000 - s)) for s in range(0, 5000, 613)])
    assert torch.equal(whole, pieces)
    assert torch.equal(part.group_sizes(chunk_size=97), torch.bincount(whole, minlength=37))


def test_ids_identical_in_a_fresh_process():
    code = (
        "from gpart.tuner.partition import Partition;"
        "print(Partition(total=10**6, d=1000, seed=42, grouping='random').group_ids(500000, 6).tolist(),"
        "Partition(total=5000, d=37, seed=3, grouping='balanced').group_ids(100, 6).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = (
        Partition(total=10**6, d=1000, seed=42, grouping="random").group_ids(500000, 6).tolist(),
        Partition(total=5000, d=37, seed=3, grouping="balanced").group_ids(100, 6).tolist(),
    )
    assert out.stdout.strip() == f"{here[0]} {here[1]}"


@pytest.mark.parametrize("scheme", [1, 2, 3])
@pytest.mark.parametrize("total,d", [(1000, 7), (4097, 64), (10, 10), (65537, 1000), (5, 8)])
def test_balanced_sizes_differ_by_at_most_one(total, d, scheme):
    part = Partition(total=total, d=d, seed=11, grouping="balanced", scheme=scheme)
    if scheme < 3:  # a permutation of the positions, then mod d
        perm = part.feistel.permute(torch.arange(total))
        assert torch.equal(torch.sort(perm).values, torch.arange(total))
    ids = part.group_ids(0, total)
    sizes = torch.bincount(ids, minlength=d)
    assert int(sizes.max() - sizes.min()) <= 1
    assert torch.equal(sizes, part.group_sizes())
    if scheme == 3:  # stratified: every window of d consecutive positions is a bijection
        for start in range(0, total - d + 1, d):
            window = ids[start : start + d]
            assert torch.equal(torch.sort(window).values, torch.arange(d))


def _reference_stratified(total: int, d: int, seed: int, start: int, count: int) -> list[int]:
    """Scheme 3's balanced ids in plain Python ints, from the definition (partition's module
    doc): window `c`, offset `o`, group `(a_c o + b_c) mod d`."""
    golden = 0x9E3779B97F4A7C15
    key_b, key_a, key_units = (_mix(seed + (5 + s) * golden) for s in range(3))
    units, i = [], 0
    while len(units) < 1024:
        a = _mix(i + key_units) % d
        if math.gcd(a, d) == 1:
            units.append(a)
        i += 1
    out = []
    for p in range(start, start + count):
        c, o = divmod(p, d)
        out.append((units[_mix(c + key_a) >> 54] * o + _mix(c + key_b) % d) % d)
    return out


@pytest.mark.parametrize("mode", ["off", "on"])
def test_stratified_balanced_ids_are_pinned_on_the_eager_and_fused_paths(mode):
    # Against the definition in Python ints: d of 1 and 2 (degenerate unit tables), a prime,
    # powers of two, a highly composite d (few units), d up to 2**31 - 1, seeds up to
    # 2**63 - 1, ranges straddling windows and far into a large space.
    from gpart.tuner import fused

    cases = [(1000, 7, 42, 0, 1000), (70_000, 1, 3, 5, 100), (70_000, 2, 3, 0, 300),
             (3_000_000, 23040, 0, 2_990_000, 3000), (1 << 20, 65536, 7, 65000, 2000),
             (10**6, 30030, 2**31 + 7, 123_457, 3000), (10**7, 2**31 - 1, 2**63 - 1, 0, 2000),
             (3 * 2**33, 1_000_003, 42, 2**34 + 5, 2000)]  # fmt: skip
    with fused.forced(mode):
        for total, d, seed, start, count in cases:
            part = Partition(total, d, seed, "balanced", scheme=3)
            got = part.group_ids(start, count).tolist()
            assert got == _reference_stratified(total, d, seed, start, count), (total, d, seed)
            assert part.group_ids(start, count, dtype=torch.int32).tolist() == got


def test_stratified_balanced_refuses_a_space_beyond_its_exact_reduction():
    with pytest.raises(ValueError, match="2\\*\\*51.*grouping_strategy='random'"):
        Partition(total=1 << 51, d=7, seed=0, grouping="balanced").group_ids(0, 4)


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize("compile_mode", ["on", "off"])
def test_balanced_walk_reuses_its_stage_counts_without_counting_again(
    monkeypatch, compile_mode, scheme
):
    # On a GPU the walk's later calls take their stage sizes from the first call
    # (`nonzero_static`: the host never waits). Forced here on the CPU: same ids as counting
    # afresh and as the plain-Python reference, and no `nonzero` after the first call.
    from gpart.tuner import fused
    from gpart.tuner import legacy as partition_module

    monkeypatch.setattr(partition_module, "_static_walk", lambda device: True)
    monkeypatch.setattr(partition_module, "_WALK_SIZES", {})
    part = Partition(total=70_001, d=997, seed=3, grouping="balanced", scheme=scheme)
    with fused.forced(compile_mode):
        first = part.group_ids(100, 60_000)
        counted = dict(partition_module._WALK_SIZES)
        assert len(counted) == 1 and next(iter(counted.values()))[-1] == 0
        assert next(iter(counted.values()))[0] > 0  # there were stragglers to walk

        calls = {"nonzero": 0, "static": 0}
        real_nonzero, real_static = torch.Tensor.nonzero, torch.nonzero_static

        def nonzero(self, *a, **k):
            calls["nonzero"] += 1
            return real_nonzero(self, *a, **k)

        def static(*a, **k):
            calls["static"] += 1
            return real_static(*a, **k)

        monkeypatch.setattr(torch.Tensor, "nonzero", nonzero)
        monkeypatch.setattr(torch, "nonzero_static", static)
        again = part.group_ids(100, 60_000)
        assert calls == {"nonzero": 0, "static": len(next(iter(counted.values())))}
        other = part.group_ids(5, 1_000)  # another range counts its own stages
        assert calls["nonzero"] > 0 and len(partition_module._WALK_SIZES) == 2
    assert torch.equal(first, again)
    assert first.tolist() == _reference_balanced(70_001, 997, 3, 100, 60_000, scheme)
    assert other.tolist() == _reference_balanced(70_001, 997, 3, 5, 1_000, scheme)


def test_a_walk_that_never_ends_stops_with_an_error_naming_the_fallback(monkeypatch):
    # A miscompiled walk kernel (inductor's AVX2 masks once made one: gpart.tuner.hashing,
    # AVX2 MASKS) leaves values outside [0, D) for good; the walk must stop, not hang.
    from gpart.tuner import legacy

    part = Partition(total=70_001, d=997, seed=3, grouping="balanced", scheme=1)
    stuck = lambda out, *args: out  # noqa: E731 (a kernel that never moves a value)
    monkeypatch.setattr(legacy, "_k_rewalk", stuck)
    with pytest.raises(RuntimeError, match="cycle walk.*GPART_COMPILE=0"):
        part.feistel.group_ids_range(100, 60_000, 997, torch.device("cpu"), torch.int64, False)


@pytest.mark.parametrize("scheme", [1, 2])
@pytest.mark.parametrize("compile_mode", ["on", "off"])
def test_balanced_ids_beyond_float64_exact_division_are_the_same(monkeypatch, compile_mode, scheme):
    # Adapted spaces of 2**53 entries and more skip the float64 `mod d` and permute first;
    # lowered here so that a small space takes that branch: the ids must not change.
    from gpart.tuner import fused
    from gpart.tuner import legacy as partition_module

    part = Partition(total=70_001, d=997, seed=3, grouping="balanced", scheme=scheme)
    monkeypatch.setattr(partition_module, "_EXACT_F64", 0)
    with fused.forced(compile_mode):
        got = part.group_ids(100, 3_000)
    assert got.tolist() == _reference_balanced(70_001, 997, 3, 100, 3_000, scheme)


def test_random_grouping_is_roughly_uniform_and_seed_dependent():
    a = Partition(total=200_000, d=100, seed=1, grouping="random").group_sizes()
    b = Partition(total=200_000, d=100, seed=2, grouping="random").group_ids(0, 1000)
    assert int(a.sum()) == 200_000
    assert a.min() > 1700 and a.max() < 2300  # mean 2000, std ~44
    assert not torch.equal(Partition(200_000, 100, 1, "random").group_ids(0, 1000), b)


def test_scales():
    part = Partition(total=1000, d=7, seed=0, grouping="balanced")
    sizes = part.group_sizes().double()
    assert torch.allclose(part.scales(True).double(), sizes.rsqrt())
    assert torch.equal(part.scales(False), torch.ones(7))


def test_bad_partition_arguments():
    with pytest.raises(ValueError, match="positive"):
        Partition(total=10, d=0, seed=0, grouping="random")
    with pytest.raises(ValueError, match="grouping"):
        Partition(total=10, d=2, seed=0, grouping="sorted")


def _mix(x: int) -> int:
    x &= M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _reference_balanced(
    total: int, d: int, seed: int, start: int, count: int, scheme: int = 1
) -> list[int]:
    """The balanced grouping in plain Python ints (slow, obviously right), cycle walking back
    into [0, total), then `% d`. Scheme 1: a balanced 4-round Feistel network on the smallest
    even width, keyed by `seed_key(seed, 1 + r)`. Scheme 2: the smallest width `b` with
    `2**b >= total`, left half `b // 2` bits, halves updated in turn (left from right, right
    from left), round keys `splitmix64(seed + (r + 1) * golden)`."""
    bits = max(2, (max(total, 2) - 1).bit_length())
    if scheme == 1:
        half = (bits + 1) // 2
        mask = (1 << half) - 1
        keys = [
            ((seed + 1) * 0x9E3779B97F4A7C15 + (1 + r) * 0xD1B54A32D192ED03) & M64 for r in range(4)
        ]

        def encrypt(x: int) -> int:
            left, right = x >> half, x & mask
            for key in keys:
                left, right = right, left ^ (_mix(right + key) & mask)
            return (left << half) | right
    else:
        low = bits - bits // 2
        lo_mask, hi_mask = (1 << low) - 1, (1 << (bits // 2)) - 1
        keys = [_mix(seed + (r + 1) * 0x9E3779B97F4A7C15) for r in range(4)]

        def encrypt(x: int) -> int:
            left, right = x >> low, x & lo_mask
            for r, key in enumerate(keys):
                if r % 2 == 0:
                    left ^= _mix(right + key) & hi_mask
                else:
                    right ^= _mix(left + key) & lo_mask
            return (left << low) | right

    out = []
    for p in range(start, start + count):
        y = encrypt(p)
        while y >= total:
            y = encrypt(y)
        out.append(y % d)
    return out


# sha256 (first 16 hex digits) of the int64 ids computed by the implementation before the
# fused balanced-ids kernel (permute_range, then a separate `% d`), on both paths.
GOLDEN_BALANCED_DIGESTS = [
    ((3_000_000, 23040, 0, 1_000_000, 600_000), "50f2e5f06a47856c"),
    ((70_000, 1000, 42, 0, 70_000), "13f7affcc0697b5b"),
    ((1 << 20, 5000, 7, 123_457, 500_001), "25c5f0f8f2cfc45c"),
]


@pytest.mark.parametrize("mode", ["off", "on"])
def test_balanced_ids_are_pinned_on_the_eager_and_fused_paths(mode):
    # The fused kernel (permute + walk + float64 mod in one pass, stragglers compacted)
    # must not change a single id: against a plain-Python reference on ranges with many
    # stragglers (the Feistel domain is 2.0x-3.2x larger than D), and against digests of
    # the previous implementation's ids on ranges large enough to exercise every branch.
    import hashlib

    from gpart.tuner import fused

    with fused.forced(mode):
        for total, d, seed, start, count in [(3_000_000, 23040, 0, 2_999_000, 1000),
                                             (70_000, 1000, 42, 123, 1500),
                                             ((1 << 20) + 1, 17, 5, 1 << 19, 1200)]:  # fmt: skip
            for scheme in (1, 2):
                part = Partition(total, d, seed, "balanced", scheme=scheme)
                got = part.group_ids(start, count).tolist()
                assert got == _reference_balanced(total, d, seed, start, count, scheme)
        for (total, d, seed, start, count), digest in GOLDEN_BALANCED_DIGESTS:
            part = Partition(total, d, seed, "balanced", scheme=1)
            ids = part.group_ids(start, count, dtype=torch.int32)
            raw = ids.to(torch.int64).numpy().tobytes()
            assert hashlib.sha256(raw).hexdigest()[:16] == digest
