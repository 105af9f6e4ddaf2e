"""GPart's layer ops as opaque custom ops, for a model that the user compiles.

When the user runs ``torch.compile(model)``, dynamo traces into each adapted layer. The
autograd functions of `gpart.tuner.ops` are not made to be traced: their hash is unsigned
64-bit arithmetic on int64 (it relies on multiplication wrapping modulo 2**64), which
inductor, given static shapes, folds into index expressions whose constants overflow its
int64 printer (``OverflowError: -18446744073709551616 too big to convert to int64_t``); they
keep per-call Python state (memoised `s * theta`, the masked gradient), and their fused
kernels are `torch.compile` graphs of their own. So under compilation a layer calls
``gpart::adapted`` instead, a `torch.library.custom_op` whose implementation is the eager
code itself (`ops.linear_forward` / `ops.generic_forward`, fused kernels included) and
whose backward is a second custom op (``gpart::adapted_backward``) running
`ops.linear_backward` / `ops.generic_backward`. The outer graph sees two opaque calls with
known output shapes (their fake implementations): no graph break (``fullgraph=True``
compiles), nothing traced through the hash, and the numbers are those of the eager path
because the same functions compute them.

A custom op takes tensors and plain numbers only, so a layer's `AdapterTerm`s travel
flattened (`flatten_terms`) and are rebuilt inside (`_unflatten`); the description is
complete (no table of objects keyed by an id), so a graph cached on disk by inductor and
reloaded in another process calls the op with everything it needs.

Dropout: the per-call key is drawn inside the graph as a 0-d int64 tensor on the weight's
device (`dropout_key`), so a step neither reads it back to the host nor repeats it when a
CUDA graph replays the step (each replay draws anew, as inductor's own random ops do).
Compiled, the masks therefore come from the graph's random stream, not eager's: as for
``nn.Dropout`` under ``torch.compile``, the same seed gives other masks (identical ones with
``torch._inductor.config.fallback_random = True`` on a CPU).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

import gpart.tuner.ops as ops
from gpart.tuner.fastfood import FastfoodCache, FastfoodProjection
from gpart.tuner.partition import Partition

# Per term: projection kind, total, d, seed, scheme, grouping, assignment, offset,
# weight_numel, bias_numel, theta_start, Fastfood's first block (-1: no cache), whether ids
# are cached, whether a dropout key is given. Its tensors: theta (in `thetas`), then in
# `buffers` the scales, the ids, Fastfood's sign, gauss and perm, the key, those present.
# (No list of optional tensors: torch 2.15's custom ops record no autograd for a list
# holding a None.)
_INTS = 14
_PARTITION, _FASTFOOD = 0, 1
_GROUPINGS = ("random", "balanced", "signed_magnitude")
_ASSIGNMENTS = ("stateless", "materialized")
# `op` of a layer: its functional form (see `generic_op` for the others).
LINEAR, LINEAR_T = "linear", "linear_t"


def dropout_key(device: torch.device) -> torch.Tensor:
    """A dropout key drawn inside the compiled graph (module doc), the range eager's has."""
    return torch.randint(0, 2**62, (), dtype=torch.int64, device=device)


def flatten_terms(
    terms: list[ops.AdapterTerm],
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int], list[float]]:
    """A layer's terms as the custom op's thetas, buffers, integers and floats (one float
    each: the dropout probability)."""
    thetas: list[torch.Tensor] = []
    buffers: list[torch.Tensor] = []
    ints: list[int] = []
    floats: list[float] = []
    for t in terms:
        ff, p, key = t.fastfood, t.partition, t.dropout_key
        keyed = t.dropout > 0.0
        if keyed and not isinstance(key, torch.Tensor):
            raise ValueError("under torch.compile the dropout key must be a tensor (dropout_key)")
        thetas.append(t.theta)
        buffers.append(t.scales)
        if t.ids is not None:
            buffers.append(t.ids)
        if ff is not None:
            buffers += [ff.sign, ff.gauss, ff.perm]
        if keyed:
            buffers.append(key)
        if isinstance(p, FastfoodProjection):
            ints += [_FASTFOOD, p.total, p.d, p.seed, p.scheme, 0, 0]
        else:
            grouping, assignment = _GROUPINGS.index(p.grouping), _ASSIGNMENTS.index(p.assignment)
            ints += [_PARTITION, p.total, p.d, p.seed, p.scheme, grouping, assignment]
        ints += [t.offset, t.weight_numel, t.bias_numel, t.theta_start]
        ints += [ff.k0 if ff is not None else -1, int(t.ids is not None), int(keyed)]
        floats.append(t.dropout)
    return thetas, buffers, ints, floats


@functools.lru_cache(maxsize=4096)
def _projection(kind, total, d, seed, scheme, grouping, assignment):
    if kind == _FASTFOOD:
        return FastfoodProjection(total=total, d=d, seed=seed, scheme=scheme)
    return Partition(
        total=total,
        d=d,
        seed=seed,
        grouping=_GROUPINGS[grouping],
        scheme=scheme,
        assignment=_ASSIGNMENTS[assignment],
    )


def _unflatten(
    thetas: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor],
    ints: Sequence[int],
    floats: Sequence[float],
) -> list[ops.AdapterTerm]:
    terms = []
    rest = iter(buffers)
    for i, (theta, dropout) in enumerate(zip(thetas, floats, strict=True)):
        spec = ints[i * _INTS : (i + 1) * _INTS]
        offset, weight_numel, bias_numel, theta_start, k0, has_ids, keyed = spec[7:]
        scales = next(rest)
        ids = next(rest) if has_ids else None
        fastfood = None
        if k0 >= 0:
            sign, gauss, perm = next(rest), next(rest), next(rest)
            fastfood = FastfoodCache(k0=k0, sign=sign, gauss=gauss, perm=perm)
        terms.append(
            ops.AdapterTerm(
                theta=theta,
                scales=scales,
                partition=_projection(*spec[:7]),
                offset=offset,
                weight_numel=weight_numel,
                bias_numel=bias_numel,
                ids=ids,
                dropout=dropout,
                dropout_key=next(rest) if keyed else None,
                theta_start=theta_start,
                fastfood=fastfood,
            )
        )
    return terms


# ---------------------------------------------------------------- generic layer ops
def conv2d_op(stride, padding, dilation, groups) -> tuple[str, list[int]]:
    """(op, op_ints) of a Conv2d's `F.conv2d(x, w, b, ...)` (padding: two ints or a string)."""
    ints = [*stride, *dilation, groups]
    if isinstance(padding, str):
        return f"conv2d:{padding}", ints
    return "conv2d", [*ints, *padding]


def embedding_op(max_norm, norm_type, scale_grad_by_freq) -> tuple[str, list[int], list[float]]:
    """(op, op_ints, op_floats) of an Embedding's `F.embedding(x, w, ...)` (no padding_idx:
    see `layer.Embedding`)."""
    return (
        "embedding",
        [int(scale_grad_by_freq)],
        [math.nan if max_norm is None else max_norm, norm_type],
    )


def generic_op(op: str, op_ints: Sequence[int], op_floats: Sequence[float]) -> Callable:
    """`op(x, w, b)`, the functional form described by `conv2d_op` / `embedding_op`."""
    if op.startswith("conv2d"):
        stride, dilation, groups = tuple(op_ints[0:2]), tuple(op_ints[2:4]), op_ints[4]
        padding = op.partition(":")[2] or tuple(op_ints[5:7])
        return partial(_conv2d, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if op == "embedding":
        max_norm, norm_type = op_floats
        return partial(
            _embedding,
            max_norm=None if math.isnan(max_norm) else max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=bool(op_ints[0]),
        )
    raise ValueError(f"unknown GPart layer op {op!r}; known: linear, linear_t, conv2d, embedding")


def op_grads(op: str, op_ints: Sequence[int], op_floats: Sequence[float]) -> Callable:
    """`(x, w, b, grad_y, need_x) -> (grad_x, grad_w, grad_b)` of `generic_op`'s op, by the
    aten backward kernels that autograd itself runs for it (so the same numbers as the eager
    path): a custom op's implementation runs below autograd, which records nothing there."""
    if op.startswith("conv2d"):
        return partial(_conv2d_grads, op=generic_op(op, op_ints, op_floats))
    if op == "embedding":
        return partial(_embedding_grads, scale_grad_by_freq=bool(op_ints[0]))
    raise ValueError(f"unknown GPart layer op {op!r}; known: conv2d, embedding")


def _conv2d_grads(x, w, b, grad_y, need_x, *, op):
    kw = op.keywords
    padding = kw["padding"]
    if isinstance(padding, str):  # 'valid', or 'same' (stride 1): symmetric where it can be
        total = [dil * (k - 1) for dil, k in zip(kw["dilation"], w.shape[2:], strict=True)]
        if padding == "same" and any(t % 2 for t in total):
            raise ValueError(
                "GPart under torch.compile: Conv2d(padding='same') with an even kernel pads "
                "unevenly; give the layer explicit padding (or pad its input) instead."
            )
        padding = [t // 2 for t in total] if padding == "same" else [0, 0]
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad_y,
        x,
        w,
        None if b is None else [b.shape[0]],
        list(kw["stride"]),
        list(padding),
        list(kw["dilation"]),
        False,
        [0, 0],
        kw["groups"],
        [need_x, True, b is not None],
    )
    return grad_x, grad_w, grad_b


def _embedding_grads(x, w, b, grad_y, need_x, *, scale_grad_by_freq):
    # padding_idx -1: none (see layer.Embedding)
    grad_w = torch.ops.aten.embedding_dense_backward(grad_y, x, w.shape[0], -1, scale_grad_by_freq)
    return None, grad_w, None


def _conv2d(x, w, b, *, stride, padding, dilation, groups):
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


def _embedding(x, w, b, **kwargs):
    return F.embedding(x, w, **kwargs)


# ---------------------------------------------------------------- the custom ops
# The arguments both ops take: a layer's input, base weight and bias, its flattened terms
# (`flatten_terms`) and its op (`LINEAR`, `LINEAR_T`, or `generic_op`'s description).
_ARGS = (
    "Tensor x, Tensor weight, Tensor? bias, Tensor[] thetas, Tensor[] buffers, int[] ints, "
    "float[] floats, str op, int[] op_ints, float[] op_floats"
)


@torch.library.custom_op("gpart::adapted", mutates_args=(), schema=f"({_ARGS}) -> Tensor")
def adapted(x, weight, bias, thetas, buffers, ints, floats, op, op_ints, op_floats):
    """`op(x, W0 + dW, b0 + db)` of one adapted layer (`ops.linear_forward` and kin)."""
    terms = _unflatten(thetas, buffers, ints, floats)
    if op in (LINEAR, LINEAR_T):
        y = ops.linear_forward(x, weight, bias, terms, op == LINEAR_T)
    else:
        y = ops.generic_forward(x, weight, bias, terms, generic_op(op, op_ints, op_floats))
    return y.contiguous()


@adapted.register_fake
def _adapted_fake(x, weight, bias, thetas, buffers, ints, floats, op, op_ints, op_floats):
    if op in (LINEAR, LINEAR_T):
        return F.linear(x, weight.t() if op == LINEAR_T else weight, bias)
    if op == "embedding":  # not F.embedding: its max_norm renormalises the weight in place
        return weight.new_empty((*x.shape, weight.shape[1]))
    return generic_op(op, op_ints, op_floats)(x, weight, bias).contiguous()


@torch.library.custom_op(
    "gpart::adapted_backward",
    mutates_args=(),
    schema=f"(Tensor grad_y, {_ARGS}, bool need_x) -> Tensor[]",
)
def adapted_backward(
    grad_y, x, weight, bias, thetas, buffers, ints, floats, op, op_ints, op_floats, need_x
):
    """[grad_x (empty when not `need_x`), theta's gradient per term] of `adapted`."""
    terms = _unflatten(thetas, buffers, ints, floats)
    if op in (LINEAR, LINEAR_T):
        backward = partial(ops.linear_backward, transposed=op == LINEAR_T)
    else:
        backward = partial(
            ops.generic_backward,
            op=generic_op(op, op_ints, op_floats),
            op_grads=op_grads(op, op_ints, op_floats),
        )
    grad_x, grads = backward(x, weight, bias, terms, grad_y=grad_y, need_x=need_x)
    grad_x = grad_x.to(x.dtype).contiguous() if need_x else x.new_empty(0)
    return [grad_x, *grads]


@adapted_backward.register_fake
def _adapted_backward_fake(
    grad_y, x, weight, bias, thetas, buffers, ints, floats, op, op_ints, op_floats, need_x
):
    grad_x = x.new_empty(x.shape) if need_x else x.new_empty(0)
    return [grad_x, *(theta.new_empty(theta.shape) for theta in thetas)]


def _setup_context(ctx, inputs, output):
    x, weight, bias, thetas, buffers, *spec = inputs
    ctx.save_for_backward(x, weight, bias, *thetas, *buffers)
    ctx.n_thetas, ctx.spec = len(thetas), spec


def _backward(ctx, grad_y):
    x, weight, bias, *tensors = ctx.saved_tensors  # unpacking checks theta's version
    thetas, buffers = tensors[: ctx.n_thetas], tensors[ctx.n_thetas :]
    need_x = ctx.needs_input_grad[0]
    grad_x, *grads = adapted_backward(grad_y, x, weight, bias, thetas, buffers, *ctx.spec, need_x)
    # One entry per input, in the inputs' structure (torch checks it): a list per list of
    # tensors, and torch counts an empty list of numbers as a list, a full one as one leaf.
    rest = [[] if isinstance(v, list) and not v else None for v in ctx.spec]
    return grad_x if need_x else None, None, None, grads, [None] * len(buffers), *rest


adapted.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- what layers call
def gpart_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    terms: list[ops.AdapterTerm],
    transposed: bool = False,
) -> torch.Tensor:
    """`ops.gpart_linear`, or the same computation as one opaque op under `torch.compile`."""
    if not torch.compiler.is_compiling():
        return ops.gpart_linear(x, weight, bias, terms, transposed)
    op = LINEAR_T if transposed else LINEAR
    return adapted(x, weight, bias, *flatten_terms(terms), op, [], [])


def gpart_generic(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    terms: list[ops.AdapterTerm],
    op: str,
    op_ints: list[int],
    op_floats: list[float],
) -> torch.Tensor:
    """`ops.gpart_generic` of the op `generic_op` describes, or the same computation as one
    opaque op under `torch.compile`."""
    if not torch.compiler.is_compiling():
        return ops.gpart_generic(x, weight, bias, terms, generic_op(op, op_ints, op_floats))
    return adapted(x, weight, bias, *flatten_terms(terms), op, op_ints, op_floats)
