"""GPart on bitsandbytes-quantized bases: `Linear4bit` (NF4, FP4, double quantization) and
`Linear8bitLt`, as peft's LoRA supports them (peft/tuners/lora/bnb.py is the anchor).

The base weight stays quantized in memory; the forward dequantizes it to the compute dtype,
adds `dW` and runs one matmul through the same autograd function as every other GPart
`Linear` (`ops.gpart_linear`), so theta gets its gradient exactly as on a float base. The
alternative, bitsandbytes' quantized matmul plus `x @ dW^T`, was no faster on this
project's CPU (README, "Quantized bases") and needs a second matmul and a second path for
theta's gradient. Merging dequantizes, adds `dW` and quantizes again, with
peft's rounding warning.

bitsandbytes is optional (`uv sync --extra quant`); this module is imported only when a
model holds its layers.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import bitsandbytes as bnb
import torch
from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
from peft.tuners.tuners_utils import check_adapters_to_merge
from peft.utils.integrations import dequantize_bnb_weight

from gpart.tuner.layer import Linear
from gpart.tuner.ops import gpart_linear

QUANTIZED_TYPES = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)


def is_bnb_layer(module: torch.nn.Module) -> bool:
    return isinstance(module, QUANTIZED_TYPES)


def unpack_cpu_layout(layer: torch.nn.Module) -> bool:
    """Put a `Linear4bit`'s weight back into bitsandbytes' standard layout; True if it was not.

    On a CPU with AVX512-BF16, `Linear4bit.forward` repacks its weight for the CPU kernel
    at the first inference forward (eval mode, no grad) and keeps it so. That layout only
    serves inference: a later *training* forward through it (bitsandbytes 0.50's
    ``matmul_4bit`` takes the ``gemv_4bit`` path) returns outputs without a gradient path
    to the input, so every layer below gets no gradient, silently (only autograd warns).
    Restored with the inverse bitsandbytes itself applies before saving or moving the
    weight; exact (the same codes, only their order changes).
    """
    weight = getattr(layer, "weight", None)
    quant_state = getattr(weight, "quant_state", None)
    if not getattr(quant_state, "packing_format_for_cpu", False):
        return False
    weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
        weight.data, quant_state
    )
    return True


def unpack_cpu_layouts(model: torch.nn.Module) -> int:
    """`unpack_cpu_layout` on every `Linear4bit` of `model`; the number that were repacked.

    Call it before training a model that may have run an inference forward (an evaluation
    during training, a base-model score before it); `gpart.runners.quantization` does so
    at every training step.
    """
    return sum(unpack_cpu_layout(m) for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))


class _Redequantize:
    """What autograd keeps of a quantized layer's dequantized W0 until the backward."""

    def __init__(self, layer: QuantLinear, dtype: torch.dtype) -> None:
        self.layer, self.dtype = layer, dtype

    def weight(self) -> torch.Tensor:
        return self.layer.dequantized_weight().to(self.dtype)


class QuantLinear(Linear):
    """A bitsandbytes `Linear4bit` or `Linear8bitLt` base: W0 dequantized per forward."""

    def __init__(self, base_layer: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(base_layer, *args, fan_in_fan_out=False, **kwargs)

    def dequantized_weight(self) -> torch.Tensor:
        base = self.get_base_layer()
        unpack_cpu_layout(base)  # dequantize_4bit reads the standard layout
        state = getattr(base, "state", None)  # Linear8bitLt's scales
        return dequantize_bnb_weight(base.weight, state=state)

    @property
    def weight_in_storage(self) -> torch.Tensor:
        # The weight as the layer computes with it: shape, values (signed_magnitude), dtype.
        return self.dequantized_weight()

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        base = self.get_base_layer()
        return getattr(base, "compute_dtype", None) or x.dtype

    def _adapted_forward(self, x, terms, *args, **kwargs):
        base = self.get_base_layer()
        dtype = self._compute_dtype(x)
        weight = self.dequantized_weight().to(dtype)
        bias = None if base.bias is None else base.bias.to(dtype)

        # gpart_linear saves W0 for its backward; a dense copy per adapted layer would hold
        # the memory the 4-bit base saves until the backward. It saves a note instead and
        # the backward dequantizes again (torch's saved-tensor hooks, as activation
        # checkpointing and CPU offloading use them).
        # autograd keeps the hooks with what they saved: they must not hold W0 themselves.
        held = weakref.ref(weight)

        def pack(t: torch.Tensor):
            return _Redequantize(self, dtype) if t is held() else t

        def unpack(saved):
            return saved.weight() if isinstance(saved, _Redequantize) else saved

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            out = gpart_linear(x.to(dtype), weight, bias, terms, transposed=False)
        return out.to(x.dtype)

    def _set_weight(self, w: torch.Tensor) -> None:
        """Quantize `w` into the base layer as bitsandbytes quantizes a loaded weight."""
        base = self.get_base_layer()
        old = base.weight
        if isinstance(base, bnb.nn.Linear4bit):
            kwargs = {k: v for k, v in old.__dict__.items() if not k.startswith("_")}
            kwargs.pop("data", None)
            kwargs["requires_grad"] = False
            kwargs["bnb_quantized"] = False
            base.weight = bnb.nn.Params4bit(w.to("cpu"), **kwargs).to(old.device)
        else:
            base.weight = bnb.nn.Int8Params(
                w.to("cpu"), requires_grad=False, has_fp16_weights=old.has_fp16_weights
            ).to(old.device)
            base.state.reset_grads()

    def _weight_for_merge(self) -> torch.Tensor:
        return self.dequantized_weight()

    def _store_merged_weight(self, weight: torch.Tensor) -> None:
        self._set_weight(weight)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        for name in check_adapters_to_merge(self, adapter_names):
            warnings.warn(
                f"Merging GPart adapter {name!r} into a quantized "
                f"{type(self.get_base_layer()).__name__} re-quantizes W0 + dW: generations "
                "may differ from the unmerged model by rounding errors (as for peft's LoRA).",
                stacklevel=2,
            )
        super().merge(safe_merge=safe_merge, adapter_names=adapter_names)
