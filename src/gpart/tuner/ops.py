"""The GPart computation: one autograd function per adapted layer.

Forward builds `W = W0 + dW` transiently and runs the layer's op **once** on it.
Backward rebuilds `dW` (it is not kept alive between forward and backward), computes
`grad_x` and `grad_W` with the layer's own matmuls, and reduces `grad_W` onto `theta`:
`grad_theta_j = s_j * sum_{p in G_j} grad_W_p`, accumulated in fp32.

Everything here is plain torch, so CPU and CUDA share it; a fused kernel can later replace
`AdapterTerm.values` / `AdapterTerm.accumulate_grad` without touching anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpart.tuner.partition import Partition, hash_positions

# Dropout masks come from a hash of (position, per-call key) in their own stream, so backward
# reproduces the forward mask exactly without storing it.
_DROPOUT_STREAM = 7
_DROPOUT_BITS = 24


@dataclass
class AdapterTerm:
    """One adapter's contribution to one layer: `dW_p = s_g(p) * theta_g(p)` (masked)."""

    theta: torch.Tensor  # (d,) fp32 parameter
    scales: torch.Tensor  # (d,) fp32
    partition: Partition
    offset: int  # global position of this layer's first adapted entry
    weight_numel: int
    bias_numel: int  # 0 when the bias is not adapted
    ids: torch.Tensor | None = None  # materialized int32 ids of weight (+ bias) entries
    dropout: float = 0.0
    dropout_key: int | None = None  # set per training call when dropout > 0

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
        positions = torch.arange(self.offset + start, self.offset + start + count, device=device)
        bits = hash_positions(positions, self.dropout_key, stream=_DROPOUT_STREAM) & (
            (1 << _DROPOUT_BITS) - 1
        )
        threshold = round(self.dropout * (1 << _DROPOUT_BITS))
        keep = bits >= threshold
        return keep.to(self.acc_dtype) / (1.0 - self.dropout)

    def _masked(self) -> bool:
        return self.dropout > 0.0 and self.dropout_key is not None

    def values(self, start: int, count: int, device: torch.device) -> torch.Tensor:
        """fp32 update of entries `start .. start + count - 1` of this layer."""
        coef = self.theta.detach().to(device, self.acc_dtype) * self.scales.to(
            device, self.acc_dtype
        )
        out = coef[self.group_ids(start, count, device)]
        if self._masked():
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
        if self._masked():
            flat = flat * self._keep_scale(start, flat.numel(), flat.device)
        grad_theta.index_add_(0, self.group_ids(start, flat.numel(), flat.device), flat)

    def grad_theta(self, grad_w: torch.Tensor, grad_b: torch.Tensor | None) -> torch.Tensor:
        g = torch.zeros(self.theta.shape[0], dtype=self.acc_dtype, device=grad_w.device)
        self.accumulate_grad(g, 0, grad_w)
        if self.bias_numel and grad_b is not None:
            self.accumulate_grad(g, self.weight_numel, grad_b)
        return (g * self.scales.to(g.device, g.dtype)).to(self.theta.dtype)


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Tensor in at least fp32 for the W0 + dW sum (fp64 stays fp64)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def merged_weight(
    weight: torch.Tensor, bias: torch.Tensor | None, terms: list[AdapterTerm]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`W0 + sum dW` and `b0 + sum db` in the base layer's dtype (bias=None: weight only)."""
    new_w = _acc(weight)
    new_b = None if bias is None else _acc(bias)
    for term in terms:
        dw, db = term.delta(weight.shape, weight.device)
        new_w = new_w + dw.to(new_w.dtype)
        if db is not None and new_b is not None:
            new_b = new_b + db.to(new_b.dtype)
    return new_w.to(weight.dtype), None if bias is None else new_b.to(bias.dtype)


class _GPartLinearFn(torch.autograd.Function):
    """y = x @ (W0 + dW)^T + (b0 + db) with grads for x and every theta.

    `transposed=True` is transformers' Conv1D (weight stored as [in, out]).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, terms, transposed, *thetas):
        w, b = merged_weight(weight, bias, terms)
        y = F.linear(x, w.t() if transposed else w, b)
        ctx.save_for_backward(x, weight, bias)
        ctx.terms = terms
        ctx.transposed = transposed
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, bias = ctx.saved_tensors
        terms, transposed = ctx.terms, ctx.transposed
        compute_dtype = grad_y.dtype
        grad_x = None
        if ctx.needs_input_grad[0]:
            w, _ = merged_weight(weight, None, terms)  # rebuilt, not kept from forward
            w = w.to(compute_dtype)
            grad_x = grad_y @ (w.t() if transposed else w)
        gy2 = grad_y.reshape(-1, grad_y.shape[-1])
        x2 = x.reshape(-1, x.shape[-1]).to(compute_dtype)
        grad_w = x2.t() @ gy2 if transposed else gy2.t() @ x2
        grad_b = gy2.sum(0) if any(t.bias_numel for t in terms) else None
        grad_thetas = tuple(t.grad_theta(grad_w, grad_b) for t in terms)
        return (grad_x, None, None, None, None, *grad_thetas)


class _GPartGenericFn(torch.autograd.Function):
    """y = op(x, W0 + dW, b0 + db) for any op; backward recomputes op on the rebuilt weight.

    Used for Conv2d and Embedding, where the extra op in backward is cheap (a patch
    embedding, a lookup); Linear/Conv1D take the explicit `_GPartLinearFn`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, terms, op, *thetas):
        w, b = merged_weight(weight, bias, terms)
        ctx.save_for_backward(x, weight, bias)
        ctx.terms, ctx.op = terms, op
        return op(x, w, b)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, bias = ctx.saved_tensors
        terms, op = ctx.terms, ctx.op
        w, b = merged_weight(weight, bias, terms)
        w = w.detach().requires_grad_(True)
        inputs = [w]
        if b is not None:
            b = b.detach().requires_grad_(True)
            inputs.append(b)
        x_in = x
        if ctx.needs_input_grad[0]:
            x_in = x.detach().requires_grad_(True)
            inputs.append(x_in)
        with torch.enable_grad():
            y = op(x_in, w, b)
            grads = torch.autograd.grad(y, inputs, grad_y)
        grad_w = grads[0]
        grad_b = grads[1] if b is not None else None
        grad_x = grads[-1] if ctx.needs_input_grad[0] else None
        grad_thetas = tuple(t.grad_theta(grad_w, grad_b) for t in terms)
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
