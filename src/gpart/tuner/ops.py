"""The GPart computation: one autograd function per adapted layer.

Forward builds `W = W0 + dW` transiently and runs the layer's op **once** on it.
Backward rebuilds `dW` (it is not kept alive between forward and backward), computes
`grad_x` and `grad_W` with the layer's own matmuls, and reduces `grad_W` onto `theta`:
`grad_theta_j = s_j * sum_{p in G_j} grad_W_p`, accumulated in fp32.

Everything here is plain torch, so CPU and CUDA share it. For large weights the
elementwise part runs as fused `torch.compile` kernels (`gpart.tuner.fused`): the forward is
one pass (hash -> gather `theta` -> add to `W0`), the backward one pass that rebuilds `W` and
emits the group ids, which `index_add_` then reuses for the gradient, so the hash is
evaluated twice per step, never stored between forward and backward. Small weights (and
`GPART_COMPILE=0`) take the eager path below, which computes the same numbers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

import gpart.tuner.fused as fused
from gpart.tuner.fastfood import FastfoodCache, FastfoodProjection
from gpart.tuner.groupings import (
    random_ids_of_keyed,
    random_keyed_start,
    stratified_args,
    stratified_ids_of,
)
from gpart.tuner.hashing import (
    hash_keyed,
    hash_positions,
    keyed_start,
    keyed_start_tensor,
    reduce_tensors,
)
from gpart.tuner.partition import Partition
from gpart.tuner.schemes import SCHEME_STRATIFIED, follows_reference

# Dropout masks come from a hash of (position, per-call key) in their own stream, so backward
# reproduces the forward mask exactly without storing it.
_DROPOUT_STREAM = 7
_DROPOUT_BITS = 24


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`t.to(dtype)` without the call when it is a no-op (a few per layer and step)."""
    return t if t.dtype == dtype else t.to(dtype)


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Tensor in at least fp32 for the W0 + dW sum (fp64 stays fp64)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


# ---------------------------------------------------------------- fused kernels (pure)
# Each mirrors the eager code op for op (same integer hash, same float adds and products in
# the same order), so compiled and eager results agree. `drop` = (keyed start of the dropout
# stream, threshold, kept value 1/(1-p)) as 0-d tensors.


def _dropout_scale(n: int, drop_keyed0, threshold, kept):
    keyed = torch.arange(n, dtype=torch.int64, device=drop_keyed0.device) + drop_keyed0
    bits = hash_keyed(keyed) & ((1 << _DROPOUT_BITS) - 1)
    # (not `bits >= threshold`: gpart.tuner.hashing, AVX2 MASKS)
    return torch.where(bits < threshold, torch.zeros_like(kept), kept)


def _merge(w, dw, out_dtype: torch.dtype):
    acc = _acc(w)
    return (acc + dw.view(w.shape).to(acc.dtype)).to(out_dtype)


# `hashed` = ("random", keyed start, d, *reduction constants: `reduce_tensors`, empty for
# scheme 1), or ("stratified", *`stratified_args`): ids computed inside the merge kernel
# from the position, never stored.
def _hashed_ids(n: int, device, kind: str, *args):
    if kind == "stratified":
        return stratified_ids_of(n, *args)
    keyed0, d, *red = args
    keyed = torch.arange(n, dtype=torch.int64, device=device) + keyed0
    return random_ids_of_keyed(keyed, d, tuple(red) or None)


def _k_merge_hashed(w, coef, hashed, out_dtype: torch.dtype):
    return _merge(w, coef[_hashed_ids(w.numel(), w.device, *hashed)], out_dtype)


def _k_merge_hashed_ids(w, coef, hashed, out_dtype: torch.dtype):
    ids = _hashed_ids(w.numel(), w.device, *hashed)
    return _merge(w, coef[ids], out_dtype), ids


def _k_merge_hashed_drop(w, coef, hashed, drop_keyed0, threshold, kept, out_dtype):
    dw = coef[_hashed_ids(w.numel(), w.device, *hashed)] * _dropout_scale(
        w.numel(), drop_keyed0, threshold, kept
    )
    return _merge(w, dw, out_dtype)


def _k_merge_hashed_drop_ids(w, coef, hashed, drop_keyed0, threshold, kept, out_dtype):
    ids = _hashed_ids(w.numel(), w.device, *hashed)
    dw = coef[ids] * _dropout_scale(w.numel(), drop_keyed0, threshold, kept)
    return _merge(w, dw, out_dtype), ids


def _k_merge_ids(w, coef, ids, out_dtype: torch.dtype):
    return _merge(w, coef[ids.reshape(-1)], out_dtype)


def _k_merge_ids_drop(w, coef, ids, drop_keyed0, threshold, kept, out_dtype: torch.dtype):
    dw = coef[ids.reshape(-1)] * _dropout_scale(w.numel(), drop_keyed0, threshold, kept)
    return _merge(w, dw, out_dtype)


def _k_masked_grad(grad, drop_keyed0, threshold, kept):
    flat = grad.reshape(-1).to(kept.dtype)
    return flat * _dropout_scale(flat.numel(), drop_keyed0, threshold, kept)


# Backward with dropout: W rebuilt and the weight gradient masked in one pass (the mask is
# hashed once for both), i.e. `_k_merge_*_drop*` and `_k_masked_grad` in one kernel call.
def _k_backward_hashed_drop(w, coef, hashed, grad, drop_keyed0, threshold, kept, out_dtype):
    ids = _hashed_ids(w.numel(), w.device, *hashed)
    scale = _dropout_scale(w.numel(), drop_keyed0, threshold, kept)
    flat = grad.reshape(-1).to(kept.dtype) * scale
    return _merge(w, coef[ids] * scale, out_dtype), ids, flat


def _k_backward_ids_drop(w, coef, ids, grad, drop_keyed0, threshold, kept, out_dtype):
    scale = _dropout_scale(w.numel(), drop_keyed0, threshold, kept)
    flat = grad.reshape(-1).to(kept.dtype) * scale
    return _merge(w, coef[ids.reshape(-1)] * scale, out_dtype), flat


# Gather indices are group ids: in [0, d) by construction (multiply-shift, `% d`, or the
# cache built from them), and `merge_fused` checks that the table has d entries.
_MERGE_HASHED = fused.kernel(_k_merge_hashed, ids_in_range=True)
_MERGE_HASHED_IDS = fused.kernel(_k_merge_hashed_ids, ids_in_range=True)
_MERGE_HASHED_DROP = fused.kernel(_k_merge_hashed_drop, ids_in_range=True)
_MERGE_HASHED_DROP_IDS = fused.kernel(_k_merge_hashed_drop_ids, ids_in_range=True)
_MERGE_IDS = fused.kernel(_k_merge_ids, ids_in_range=True)
_MERGE_IDS_DROP = fused.kernel(_k_merge_ids_drop, ids_in_range=True)
_MASKED_GRAD = fused.kernel(_k_masked_grad)
_BACKWARD_HASHED_DROP = fused.kernel(_k_backward_hashed_drop, ids_in_range=True)
_BACKWARD_IDS_DROP = fused.kernel(_k_backward_ids_drop, ids_in_range=True)

# CPU segment sum: `index_add_` into one vector runs on one thread. Splitting the entries
# into a fixed number of rows, each reduced into its own accumulator by `scatter_add_`
# (parallel over rows, serial and ordered inside a row), then summing the rows, uses more
# than one core and stays deterministic; fixed, not the thread count, so results do not
# depend on it. Two rows, not four: every row costs a zeroed d-vector and its sum, and a
# row's accumulator must stay in cache while random ids hit it, so more rows pay off only
# on more cores than the two this was chosen on (CHANGELOG.md, "the decoder row").
_SCATTER_ROWS = 2
_SCATTER_MIN_ROW = 1 << 14


def segment_sum(ids: torch.Tensor, flat: torch.Tensor, d: int) -> torch.Tensor:
    """A new (d,) vector `g` with `g[j] = sum of flat[i] over ids[i] == j` (ids int32 or
    int64, flat's dtype). New, not added into a given vector: the rows' sum is the result
    itself, one d-long pass fewer per layer than summing into a zeroed one."""
    n = flat.numel()
    row = n // _SCATTER_ROWS
    if not flat.is_cpu or row < _SCATTER_MIN_ROW:
        return torch.zeros(d, dtype=flat.dtype, device=flat.device).index_add_(0, ids, flat)
    head = row * _SCATTER_ROWS
    parts = torch.zeros(_SCATTER_ROWS, d, dtype=flat.dtype, device=flat.device)
    parts.scatter_add_(1, ids[:head].view(_SCATTER_ROWS, row), flat[:head].view(_SCATTER_ROWS, row))
    g = parts.sum(0)
    if head < n:
        g.index_add_(0, ids[head:], flat[head:])
    return g


@dataclass
class AdapterTerm:
    """One adapter's contribution to one layer: `dW_p = s_g(p) * theta_g(p)` (masked), or
    with a Fastfood `partition` the entries of `P (s * theta)`.

    Under ``partition_scope="transformer_block"`` the term sees only its block: `partition`
    is the block's, `offset` is relative to the block's first entry, and the block's groups
    are `theta[theta_start : theta_start + partition.d]`.
    """

    theta: torch.Tensor  # (d,) fp32 parameter
    scales: torch.Tensor  # (d,) fp32
    partition: Partition | FastfoodProjection
    offset: int  # position of this layer's first adapted entry in its (block's) space
    weight_numel: int
    bias_numel: int  # 0 when the bias is not adapted
    ids: torch.Tensor | None = None  # materialized int32 ids of weight (+ bias) entries
    dropout: float = 0.0
    # Set per training call when dropout > 0: a Python int, or under `torch.compile` a 0-d
    # int64 tensor drawn in the graph (`gpart.tuner.custom_ops`).
    dropout_key: int | torch.Tensor | None = None
    theta_start: int = 0  # the block's first entry of theta (0: the whole of theta)
    fastfood: FastfoodCache | None = None  # Fastfood: the layer's cached B, G, Pi
    # Per device: what a pass computes once and reuses (the dropout arguments across the
    # forward and its backward; the masked weight gradient within the backward). A term lives for one forward and its backward, during
    # which theta and the dropout key do not change.
    _memo: dict[tuple[str, torch.device], object] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # One adapter's usual term, which `_GPartLinearFn` runs without the general path's
        # per-call bookkeeping (`_plain_linear_forward`): ids hashed inside the merge kernel
        # (not cached, not Feistel), no dropout, no bias entries, theta's whole length (the
        # global scope), not Fastfood. Fixed at construction: a term's fields do not change.
        part = self.partition
        self.plain = (
            self.ids is None
            and self.dropout == 0.0
            and self.bias_numel == 0
            and isinstance(part, Partition)
            and part.d == self.theta.shape[0]
            and _hashes_in_kernel(part)
        )

    def for_call(self) -> AdapterTerm:
        """This term with a memo of its own, for one call (a kept term's copy per call: the
        memo holds what a forward hands to its backward, so calls never share one). A
        shallow copy of the fields, ~0.5 us, where `dataclasses.replace` re-runs
        `__init__`."""
        term = object.__new__(AdapterTerm)
        term.__dict__.update(self.__dict__)
        term._memo = {}
        return term

    @property
    def dense(self) -> bool:
        """Fastfood: every entry depends on all of theta (no group ids)."""
        return isinstance(self.partition, FastfoodProjection)

    def _block(self, full: torch.Tensor) -> torch.Tensor:
        """The block's slice of a (d,) tensor (the tensor itself for the global scope)."""
        if self.partition.d == full.shape[0]:
            return full
        return full[self.theta_start : self.theta_start + self.partition.d]

    @property
    def numel(self) -> int:
        return self.weight_numel + self.bias_numel

    @property
    def acc_dtype(self) -> torch.dtype:
        """fp32 accumulation (fp64 only when theta itself is fp64, e.g. in gradcheck)."""
        return torch.float64 if self.theta.dtype == torch.float64 else torch.float32

    def group_ids(self, start: int, count: int, device: torch.device) -> torch.Tensor:
        if self.ids is not None:
            return self.ids[start : start + count]
        return self.partition.group_ids(self.offset + start, count, device=device)

    def _keep_scale(self, start: int, count: int, device: torch.device) -> torch.Tensor:
        if isinstance(self.dropout_key, torch.Tensor):  # drawn inside a compiled graph
            keyed0 = keyed_start_tensor(self.offset + start, self.dropout_key, _DROPOUT_STREAM)
            keyed = torch.arange(count, dtype=torch.int64, device=device) + keyed0.to(device)
            bits = hash_keyed(keyed) & ((1 << _DROPOUT_BITS) - 1)
        else:
            positions = torch.arange(
                self.offset + start, self.offset + start + count, device=device
            )
            bits = hash_positions(positions, self.dropout_key, stream=_DROPOUT_STREAM) & (
                (1 << _DROPOUT_BITS) - 1
            )
        threshold = round(self.dropout * (1 << _DROPOUT_BITS))
        keep = bits >= threshold
        return keep.to(self.acc_dtype) / (1.0 - self.dropout)

    def _masked(self) -> bool:
        return self.dropout > 0.0 and self.dropout_key is not None

    def _masks(self, start: int) -> bool:
        """Whether dropout masks the entries from `start` (all weight, or all bias, entries):
        the reference's definitions mask only `dW`; scheme 1 masked the bias update too."""
        if not self._masked():
            return False
        return start < self.weight_numel or not follows_reference(self.partition.scheme)

    def _coef(self, device: torch.device) -> torch.Tensor:
        """`s_j * theta_j` for every group (d entries): once per term (its forward and its
        backward), and inside a model's forward (`coef_scope`) once for every layer that
        shares theta and scales: one d-vector per adapter alive, not one per layer. Outside
        a scope (the wrapped model called directly) it is made per call instead of kept
        until the backward, where it would be d floats per adapted layer."""
        key = ("coef", device)
        coef = self._memo.get(key)
        if coef is None:
            coef, shared = _shared_coef(self, device)
            if shared:  # kept for the backward: one tensor for every layer, not one each
                self._memo[key] = coef
        return coef  # type: ignore[return-value]

    def values(self, start: int, count: int, device: torch.device) -> torch.Tensor:
        """fp32 update of entries `start .. start + count - 1` of this layer."""
        if self.dense:
            out = self.partition.apply(
                self._coef(device), self.offset + start, count, cache=self.fastfood
            )
        else:
            out = self._coef(device)[self.group_ids(start, count, device)]
        if self._masks(start):
            out = out * self._keep_scale(start, count, device)
        return out

    def delta(
        self, weight_shape: torch.Size, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(dW, db) in fp32; db is None when the bias is not adapted."""
        dw = self.values(0, self.weight_numel, device).view(weight_shape)
        db = self.values(self.weight_numel, self.bias_numel, device) if self.bias_numel else None
        return dw, db

    def accumulate_grad(self, grad_theta: torch.Tensor, start: int, grad: torch.Tensor) -> None:
        """grad_theta += P^T-part for entries `start ..` given their gradient (any dtype)."""
        flat = grad.reshape(-1).to(self.acc_dtype)
        if self._masks(start):
            flat = flat * self._keep_scale(start, flat.numel(), flat.device)
        if self.dense:
            grad_theta += self.partition.transpose(flat, self.offset + start, cache=self.fastfood)
            return
        grad_theta.index_add_(0, self.group_ids(start, flat.numel(), flat.device), flat)

    # ------------------------------------------------------------ fused path (large weights)
    def _dropout_args(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(keyed start, threshold, kept value) of the weight entries' dropout mask."""
        assert self.dropout_key is not None
        key = ("dropout", device)
        if key not in self._memo:
            if isinstance(self.dropout_key, torch.Tensor):  # drawn inside a compiled graph
                key0 = keyed_start_tensor(self.offset, self.dropout_key, _DROPOUT_STREAM)
                keyed0 = key0.to(device)
            else:  # new each step
                keyed0 = torch.full(
                    (),
                    keyed_start(self.offset, self.dropout_key, _DROPOUT_STREAM),
                    dtype=torch.int64,
                    device=device,
                )
            # The same division as `_keep_scale`, so the kept value is bit-identical.
            kept = torch.ones((), dtype=self.acc_dtype, device=device) / (1.0 - self.dropout)
            self._memo[key] = (
                keyed0,
                fused.scalar(round(self.dropout * (1 << _DROPOUT_BITS)), device),
                kept,
            )
        return self._memo[key]

    def weight_ids32(self, device: torch.device) -> torch.Tensor:
        """int32 group ids of the weight entries (the cache, else computed now)."""
        if self.ids is not None:
            return self.ids[: self.weight_numel]
        return self.partition.group_ids(
            self.offset, self.weight_numel, device=device, dtype=torch.int32
        )

    def merge_fused(
        self,
        w: torch.Tensor,
        out_dtype: torch.dtype,
        want_ids: bool,
        grad_w: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`w + dW` over the weight entries, cast to `out_dtype`, in one fused pass; with
        `want_ids` also the group ids (int64, or the int32 cache), so backward hashes once
        for both W and the gradient. With `grad_w` (backward) and dropout on, the same pass
        also masks the weight gradient; `grad_theta` then takes it from the term."""
        device = w.device
        if self.dense:  # Fastfood: its transforms are plain torch ops, not fused kernels
            return _merge(w, self.values(0, self.weight_numel, device), out_dtype), None
        coef = self._coef(device)
        if coef.numel() != self.partition.d:  # the kernels index coef without bounds checks
            raise ValueError(f"theta has {coef.numel()} entries, the partition {self.partition.d}")
        drop = self._dropout_args(device) if self._masked() else ()
        hashed = () if self.ids is not None else _layer_hashed_args(self, device)
        if drop and grad_w is not None:  # one kernel call for W, ids and the masked grad
            if hashed:
                new_w, ids, flat = _BACKWARD_HASHED_DROP(w, coef, hashed, grad_w, *drop, out_dtype)
            else:
                ids = self.weight_ids32(device)
                new_w, flat = _BACKWARD_IDS_DROP(w, coef, ids, grad_w, *drop, out_dtype)
            self._memo[("masked_grad", grad_w.device)] = flat
            return new_w, ids
        if hashed:
            if want_ids:
                kernel = _MERGE_HASHED_DROP_IDS if drop else _MERGE_HASHED_IDS
                return kernel(w, coef, hashed, *drop, out_dtype)
            kernel = _MERGE_HASHED_DROP if drop else _MERGE_HASHED
            return kernel(w, coef, hashed, *drop, out_dtype), None
        # Materialized ids, or the Feistel balanced ids (their cycle walk needs an id tensor).
        ids = self.weight_ids32(device)
        kernel = _MERGE_IDS_DROP if drop else _MERGE_IDS
        return kernel(w, coef, ids, *drop, out_dtype), (ids if want_ids else None)

    def grad_theta(
        self,
        grad_w: torch.Tensor,
        grad_b: torch.Tensor | None,
        weight_ids: torch.Tensor | None = None,
        on_fused_path: bool | None = None,
    ) -> torch.Tensor:
        """`s * segment_sum(grad, by g)` in fp32 (ids of the weight entries reused if given);
        with Fastfood `s * P^T grad`. Always the full length of theta (zero outside the
        term's block). `on_fused_path`: the caller's `fused.enabled` (read once per call)."""
        if on_fused_path is None:
            on_fused_path = fused.enabled(self.weight_numel, grad_w.device)
        if not self.dense and on_fused_path:
            if weight_ids is None:
                weight_ids = self.weight_ids32(grad_w.device)
            if self._masked():
                # masked already when backward's merge_fused rebuilt W with it
                flat = self._memo.pop(("masked_grad", grad_w.device), None)
                if flat is None:
                    flat = _MASKED_GRAD(grad_w, *self._dropout_args(grad_w.device))
            else:
                flat = _as(grad_w.reshape(-1), self.acc_dtype)
            # Not bincount (fp64 output, slower) nor a compiled atomic scatter (sums in a
            # run-dependent order): see segment_sum.
            g = segment_sum(weight_ids, flat, self.partition.d)
        else:
            g = torch.zeros(self.partition.d, dtype=self.acc_dtype, device=grad_w.device)
            self.accumulate_grad(g, 0, grad_w)
        if self.bias_numel and grad_b is not None:
            self.accumulate_grad(g, self.weight_numel, grad_b)
        return self.scaled_grad(g)

    def scaled_grad(self, g: torch.Tensor) -> torch.Tensor:
        """theta's gradient from `g`, the sums of the entries' gradients per group of the
        term's block: times the scales (in place: `g` is the caller's), placed in theta's
        whole length, in theta's dtype (`grad_theta`'s end; the plain path's too)."""
        scales = self._block(self.scales)
        if scales.get_device() != g.get_device() or scales.dtype != g.dtype:
            scales = scales.to(g.device, g.dtype)
        g.mul_(scales)  # g is ours: in place
        if self.partition.d != self.theta.shape[0]:
            full = torch.zeros(self.theta.shape[0], dtype=g.dtype, device=g.device)
            full[self.theta_start : self.theta_start + self.partition.d] = g
            g = full
        return _as(g, self.theta.dtype)


# `s * theta` shared by the layers of one model forward (`coef_scope`), per (theta, scales,
# block, device). Only inside a forward: theta cannot change while it runs, whereas between
# forwards it can change in ways nothing records (a fused optimizer's step and a
# `.data.copy_` leave theta's version counter and address as they were), so no product
# outlives the forward that made it (each term keeps its own for its backward).
_COEF_SCOPE: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "gpart_coef_scope", default=None
)


@contextlib.contextmanager
def coef_scope() -> Iterator[None]:
    """Share `s * theta` among the layers called inside (`GPartModel.forward`). Inside
    one already (peft's `PeftModel` enters it, then calls `GPartModel.forward`), it is that
    one."""
    if _COEF_SCOPE.get() is not None:
        yield
        return
    token = _COEF_SCOPE.set({})
    try:
        yield
    finally:
        _COEF_SCOPE.reset(token)


def _shared_coef(term: AdapterTerm, device: torch.device) -> tuple[torch.Tensor, bool]:
    """`s * theta` of `term`'s block, and whether a `coef_scope` shares it."""
    theta, scales = term.theta, term.scales
    scope = _COEF_SCOPE.get()
    key = (id(theta), id(scales), term.theta_start, term.partition.d, device)
    if scope is not None:
        hit = scope.get(key)
        if hit is not None and hit[0] is theta and hit[1] is scales:
            return hit[2], True
    acc = term.acc_dtype
    # A normal tensor even when first made under inference_mode (an evaluation), so that a
    # backward after it can use it.
    with torch.inference_mode(False), torch.no_grad():
        coef = term._block(theta.detach()).to(device, acc) * term._block(scales).to(device, acc)
    if scope is not None:
        scope[key] = (theta, scales, coef)
    return coef, scope is not None


# (id of the partition, offset, entries, device) -> (the partition, `_hashed_args`): a
# dict lookup per call, where the lru_cache's key would hash the partition's six fields.
_HASHED: dict[tuple, tuple[object, tuple]] = {}


def _layer_hashed_args(term: AdapterTerm, device: torch.device) -> tuple:
    part = term.partition
    key = (id(part), term.offset, term.weight_numel, device)
    hit = _HASHED.get(key)
    if hit is None or hit[0] is not part:
        if len(_HASHED) > 8192:
            _HASHED.clear()
        args = _hashed_args(part, term.offset, term.weight_numel, fused.concrete_device(device))
        hit = _HASHED[key] = (part, args)
    return hit[1]


@functools.lru_cache(maxsize=8192)
def _hashed_args(part: Partition, offset: int, numel: int, device: torch.device) -> tuple:
    """The `hashed` argument of the merge kernels for a layer's weight entries (per layer
    and device, made once: a step then builds no constant): stateless random grouping
    hashes, gathers and adds in one loop, no id tensor; scheme 3 balanced the same with its
    window factors. `()`: the kernels take an id tensor (the Feistel balanced ids, whose
    cycle walk needs one)."""
    if not _hashes_in_kernel(part):
        return ()
    if part.grouping == "random":
        return (
            "random",
            fused.scalar(random_keyed_start(offset, part.seed, part.scheme), device),
            fused.scalar(part.d, device),
            *reduce_tensors(part.d, part.scheme, device),
        )
    with torch.inference_mode(False), torch.no_grad():
        return (
            "stratified",
            *stratified_args(part.total, part.d, part.seed, offset, numel, device),
        )


def _hashes_in_kernel(part: Partition) -> bool:
    """Whether the merge kernels compute `part`'s ids from the position (`_hashed_args`):
    random groups, and scheme 3's stratified balanced ones; not the Feistel balanced ids."""
    return part.grouping == "random" or (
        part.grouping == "balanced" and part.scheme == SCHEME_STRATIFIED
    )


def merged_weight(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    terms: list[AdapterTerm],
    want_ids: bool = False,
    grad_w: torch.Tensor | None = None,
    on_fused_path: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor | None]]:
    """`W0 + sum dW` and `b0 + sum db` in the base layer's dtype (bias=None: weight only),
    and per term the group ids of the weight entries when `want_ids` and they were computed
    anyway (fused path: int64 hashed, int32 cached), else None. `grad_w` (backward): the
    fused path masks it for each term with dropout in the same pass (`merge_fused`).
    `on_fused_path`: the caller's `fused.enabled` (read once per call), else read here."""
    ids: list[torch.Tensor | None] = [None] * len(terms)
    if on_fused_path is None:
        on_fused_path = fused.enabled_for(weight)
    if terms and on_fused_path:
        new_w = weight
        last = len(terms) - 1
        for i, term in enumerate(terms):
            # Accumulate across adapters in fp32 and round once, exactly like the eager path.
            out_dtype = weight.dtype if i == last else _acc(weight).dtype
            new_w, ids[i] = term.merge_fused(new_w, out_dtype, want_ids, grad_w)
    else:
        new_w = _acc(weight)
        for term in terms:
            new_w = new_w + term.values(0, term.weight_numel, weight.device).view(weight.shape).to(
                new_w.dtype
            )
        new_w = new_w.to(weight.dtype)
    if bias is None or not any(t.bias_numel for t in terms):
        return new_w, bias, ids  # (what the sum below gives: b0, through fp32 and back)
    new_b = _acc(bias)
    for term in terms:
        if term.bias_numel:
            db = term.values(term.weight_numel, term.bias_numel, bias.device)
            new_b = new_b + db.to(new_b.dtype)
    return new_w, new_b.to(bias.dtype), ids


def linear_forward(
    x, weight, bias, terms: list[AdapterTerm], transposed: bool, on_fused_path: bool | None = None
) -> torch.Tensor:
    """y = x @ (W0 + dW)^T + (b0 + db); `transposed`: the weight is stored [in, out].
    `on_fused_path`: as in `merged_weight`."""
    w, b, _ = merged_weight(weight, bias, terms, on_fused_path=on_fused_path)
    return F.linear(x, w.t() if transposed else w, b)


def linear_backward(
    x,
    weight,
    bias,
    terms: list[AdapterTerm],
    transposed: bool,
    grad_y,
    need_x: bool,
    on_fused_path: bool | None = None,
) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...]]:
    """(grad_x or None, theta's gradient per term) of `linear_forward`; `on_fused_path`:
    the forward's (`_GPartLinearFn`), else read here. `bias` is not read (the bias entries'
    gradient is grad_y's sum): it keeps the signature `generic_backward` shares with it for
    `custom_ops.adapted_backward`, and `_GPartLinearFn` passes None, saving no bias."""
    grad_x = None
    ids: list[torch.Tensor | None] = [None] * len(terms)
    gy2, x2 = _grad_views(x, grad_y)
    # With dropout on the fused path, grad_w comes first so that the pass rebuilding W
    # also masks it (one kernel call instead of two; grad_w and W are alive together).
    if on_fused_path is None:
        on_fused_path = fused.enabled_for(weight)  # read once per call
    early = need_x and on_fused_path and any(t._masked() and not t.dense for t in terms)
    grad_w = _weight_grad(x2, gy2, transposed) if early else None
    if need_x:
        # Rebuilt, not kept from forward; the fused path hands back the ids it hashed.
        w, _, ids = merged_weight(weight, None, terms, True, grad_w, on_fused_path)
        w = _as(w, gy2.dtype)
        grad_x = _input_grad(gy2, w, transposed, x.shape)
        del w  # freed before the weight-gradient matmul
    if not early:
        grad_w = _weight_grad(x2, gy2, transposed)
    grad_b = gy2.sum(0) if any(t.bias_numel for t in terms) else None
    grad_thetas = tuple(
        t.grad_theta(grad_w, grad_b, i, on_fused_path) for t, i in zip(terms, ids, strict=True)
    )
    return grad_x, grad_thetas


def generic_forward(x, weight, bias, terms: list[AdapterTerm], op) -> torch.Tensor:
    """y = op(x, W0 + dW, b0 + db)."""
    w, b, _ = merged_weight(weight, bias, terms)
    return op(x, w, b)


def generic_backward(
    x, weight, bias, terms: list[AdapterTerm], op, grad_y, need_x: bool, op_grads=None
) -> tuple[torch.Tensor | None, tuple[torch.Tensor, ...]]:
    """(grad_x or None, theta's gradient per term) of `generic_forward`: op's gradients on
    the rebuilt weight, by autograd through `op`, or by `op_grads(x, w, b, grad_y, need_x)`
    -> (grad_x, grad_w, grad_b) where autograd is not at hand (inside a custom op)."""
    w, b, ids = merged_weight(weight, bias, terms, want_ids=True)
    grad_x, grad_w, grad_b = (op_grads or partial(_autograd_grads, op))(x, w, b, grad_y, need_x)
    grad_thetas = tuple(t.grad_theta(grad_w, grad_b, i) for t, i in zip(terms, ids, strict=True))
    return grad_x, grad_thetas


def _autograd_grads(op, x, w, b, grad_y, need_x: bool):
    w = w.detach().requires_grad_(True)
    inputs = [w]
    if b is not None:
        b = b.detach().requires_grad_(True)
        inputs.append(b)
    x_in = x
    if need_x:
        x_in = x.detach().requires_grad_(True)
        inputs.append(x_in)
    with torch.enable_grad():
        y = op(x_in, w, b)
        grads = torch.autograd.grad(y, inputs, grad_y)
    return grads[-1] if need_x else None, grads[0], grads[1] if b is not None else None


def _grad_views(x, grad_y) -> tuple[torch.Tensor, torch.Tensor]:
    """grad_y and x as 2-D matrices (x in grad_y's dtype) for a linear layer's backward: one
    view (a copy when grad_y arrives strided, e.g. from attention heads) serves both
    matmuls; `grad_y @ w` on a strided 3-D grad would run as a broadcast bmm."""
    return grad_y.reshape(-1, grad_y.shape[-1]), _as(x.reshape(-1, x.shape[-1]), grad_y.dtype)


def _weight_grad(x2, gy2, transposed: bool) -> torch.Tensor:
    """The weight's gradient in its storage layout (torch.mm: what `@` runs on 2-D, one
    dispatch less)."""
    return torch.mm(x2.t(), gy2) if transposed else torch.mm(gy2.t(), x2)


def _input_grad(gy2, w, transposed: bool, x_shape) -> torch.Tensor:
    """The input's gradient through the rebuilt weight `w` (in grad_y's dtype: the callers
    cast it, dropping the uncast one, so that one rebuilt weight is alive at a time)."""
    return torch.mm(gy2, w.t() if transposed else w).view(x_shape)


def _plain_linear_forward(x, weight, bias, term: AdapterTerm, transposed: bool, hashed):
    """`linear_forward` of one plain term (`AdapterTerm.plain`) on the fused path, without
    the general path's per-call bookkeeping: the same kernel, arguments and matmul, so the
    same numbers (`tests/test_fused.py` compares the two)."""
    w = _MERGE_HASHED(weight, term._coef(weight.device), hashed, weight.dtype)
    return F.linear(x, w.t() if transposed else w, bias)


def _plain_linear_backward(x, weight, term: AdapterTerm, transposed: bool, hashed, grad_y, need_x):
    """`linear_backward` of `_plain_linear_forward`: (grad_x or None, theta's gradient)."""
    gy2, x2 = _grad_views(x, grad_y)
    grad_x = ids = None
    if need_x:
        w, ids = _MERGE_HASHED_IDS(weight, term._coef(weight.device), hashed, weight.dtype)
        w = _as(w, gy2.dtype)
        grad_x = _input_grad(gy2, w, transposed, x.shape)
        del w  # freed before the weight-gradient matmul
    if ids is None:
        ids = term.weight_ids32(weight.device)
    flat = _as(_weight_grad(x2, gy2, transposed).reshape(-1), term.acc_dtype)
    # grad_theta's sum for an unmasked term, without its checks for what a plain one lacks
    return grad_x, term.scaled_grad(segment_sum(ids, flat, term.partition.d))


class _GPartLinearFn(torch.autograd.Function):
    """`linear_forward` with grads for x and every theta (`linear_backward`).

    `transposed=True` is transformers' Conv1D (weight stored as [in, out]). One plain term
    on the fused path (one adapter, the usual case) runs `_plain_linear_forward` and its
    backward: where kernel launches dominate, the general path's bookkeeping per call was
    ~10 % of a step (docs/performance.md, "Launch-bound layers").
    """

    @staticmethod
    def forward(ctx, x, weight, bias, terms, transposed, *thetas):
        # GPART_COMPILE read once for the forward and its backward: both take one path.
        on_fused_path = fused.enabled_for(weight)
        hashed = ()
        if on_fused_path and len(terms) == 1 and terms[0].plain:
            hashed = _layer_hashed_args(terms[0], weight.device)
        if hashed:
            y = _plain_linear_forward(x, weight, bias, terms[0], transposed, hashed)
        else:
            y = linear_forward(x, weight, bias, terms, transposed, on_fused_path)
        ctx.save_for_backward(x, weight, *thetas)  # (the bias: its gradient needs only grad_y)
        ctx.terms = terms
        ctx.transposed = transposed
        ctx.on_fused_path = on_fused_path
        ctx.hashed = hashed
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, *_ = ctx.saved_tensors  # unpacking checks theta's version
        if ctx.hashed:
            grad_x, grad_theta = _plain_linear_backward(
                x, weight, ctx.terms[0], ctx.transposed, ctx.hashed, grad_y, ctx.needs_input_grad[0]
            )
            return grad_x, None, None, None, None, grad_theta
        grad_x, grad_thetas = linear_backward(
            x,
            weight,
            None,
            ctx.terms,
            ctx.transposed,
            grad_y,
            ctx.needs_input_grad[0],
            ctx.on_fused_path,
        )
        return (grad_x, None, None, None, None, *grad_thetas)


class _GPartGenericFn(torch.autograd.Function):
    """`generic_forward` for any op; backward recomputes op on the rebuilt weight.

    Used for Conv2d and Embedding, where the extra op in backward is cheap (a patch
    embedding, a lookup); Linear/Conv1D take the explicit `_GPartLinearFn`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, terms, op, *thetas):
        y = generic_forward(x, weight, bias, terms, op)
        ctx.save_for_backward(x, weight, bias, *thetas)
        ctx.terms, ctx.op = terms, op
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, bias, *_ = ctx.saved_tensors  # unpacking checks theta's version
        grad_x, grad_thetas = generic_backward(
            x, weight, bias, ctx.terms, ctx.op, grad_y, ctx.needs_input_grad[0]
        )
        return (grad_x, None, None, None, None, *grad_thetas)


def gpart_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    terms: list[AdapterTerm],
    transposed: bool = False,
) -> torch.Tensor:
    return _GPartLinearFn.apply(x, weight, bias, terms, transposed, *[t.theta for t in terms])


def gpart_generic(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    terms: list[AdapterTerm],
    op: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
) -> torch.Tensor:
    return _GPartGenericFn.apply(x, weight, bias, terms, op, *[t.theta for t in terms])
