"""GPart tuner layers: wrappers around nn.Linear, transformers' Conv1D, nn.Conv2d, nn.Embedding.

A layer owns no trainable tensor: `theta` and the group scales live once on the
`GPartModel` and every layer reads them through `self._gpart_shared` (deliberately not a
registered submodule, so the state dict holds `theta` exactly once). Per adapter a layer
keeps only integers (its offset in the global adapted space) and, in the `materialized`
assignment, an int32 id cache that is never saved; with the Fastfood projection, the
random signs, Gaussians and permutations of the blocks covering it (never saved either).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import (
    BaseTunerLayer,
    _get_in_out_features,
    check_adapters_to_merge,
)
from torch import nn

import gpart.tuner.custom_ops as custom_ops
from gpart.tuner.fastfood import FastfoodCache, FastfoodProjection
from gpart.tuner.ops import AdapterTerm, merged_weight
from gpart.tuner.partition import Partition
from gpart.tuner.scope import ScopedPartition


@dataclass
class LayerSlot:
    """Where one adapter's entries of this layer sit in its global adapted space."""

    offset: int
    weight_numel: int
    bias_numel: int
    block: int = 0  # index of its block under partition_scope="transformer_block"

    @property
    def numel(self) -> int:
        return self.weight_numel + self.bias_numel


class GPartShared:
    """Model-level state shared by all layers: theta, scales and partition per adapter.

    A plain object, not an nn.Module: `GPartModel` registers `theta` (as `gpart_theta_d`) and
    `scales` (as `gpart_scales`) itself, so the state dict has `base_model.gpart_theta_d.<name>`
    exactly once, while every layer holds a reference to this holder.
    """

    def __init__(self) -> None:
        self.theta = nn.ParameterDict({})
        self.scales = BufferDict({}, persistent=False)
        # The partition (or Fastfood map) of the whole adapted space; a ScopedPartition of
        # per-block ones under partition_scope="transformer_block".
        self.partitions: dict[str, Partition | FastfoodProjection | ScopedPartition] = {}


class GPartLayer(BaseTunerLayer):
    # `gpart_theta_d` is a property onto the shared ParameterDict: peft toggles requires_grad
    # of the active adapter's theta through it, as for every other method.
    adapter_layer_names = ("gpart_theta_d",)
    other_param_names = (
        "gpart_slot",
        "gpart_dropout",
        "gpart_adapt_bias",
        "gpart_ids",
        "gpart_ff_sign",
        "gpart_ff_gauss",
        "gpart_ff_perm",
    )
    _FASTFOOD_BUFFERS = ("gpart_ff_sign", "gpart_ff_gauss", "gpart_ff_perm")

    def __init__(self, base_layer: nn.Module, shared: GPartShared, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.__dict__["_gpart_shared"] = shared
        self.gpart_slot: dict[str, LayerSlot] = {}
        self.gpart_dropout: dict[str, float] = {}
        self.gpart_adapt_bias: dict[str, bool] = {}
        self.gpart_ids = BufferDict({}, persistent=False)
        # Fastfood's B, G, Pi of this layer's blocks (FastfoodCache), regenerated from the
        # seed at injection, never saved.
        self.gpart_ff_sign = BufferDict({}, persistent=False)
        self.gpart_ff_gauss = BufferDict({}, persistent=False)
        self.gpart_ff_perm = BufferDict({}, persistent=False)
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        # adapter -> its term without dropout (`_kept_term`); a plain dict, never saved
        self.__dict__["_gpart_kept_terms"] = {}
        self.kwargs = kwargs
        # peft's convention for every LoRA-family layer (its own helper, so Conv1D, Conv2d and
        # Embedding get the same meaning as in LoRA: Embedding's are (num_embeddings, dim)).
        self.in_features, self.out_features = _get_in_out_features(self.get_base_layer())

    def get_base_layer(self) -> nn.Module:
        """peft's, without its cost on the common case. peft walks `base_layer` by
        `hasattr`, which on a plain layer raises and catches an AttributeError (~3 us, at
        every forward); a plain layer is answered here by looking where `hasattr` would
        find the attribute (class, instance, parameters, buffers, submodules)."""
        base = self.base_layer
        if (
            hasattr(type(base), "base_layer")
            or "base_layer" in base.__dict__
            or "base_layer" in base._parameters
            or "base_layer" in base._buffers
            or "base_layer" in base._modules
        ):
            return super().get_base_layer()
        return base

    @property
    def gpart_theta_d(self) -> nn.ParameterDict:
        return self._gpart_shared.theta

    @property
    def weight_in_storage(self) -> torch.Tensor:
        return self.get_base_layer().weight

    def update_layer(self, adapter_name: str, dropout: float, adapt_bias: bool) -> None:
        base = self.get_base_layer()
        has_bias = getattr(base, "bias", None) is not None
        self.gpart_dropout[adapter_name] = float(dropout)
        self.gpart_adapt_bias[adapter_name] = bool(adapt_bias and has_bias)
        bias_numel = base.bias.numel() if self.gpart_adapt_bias[adapter_name] else 0
        # The offset is assigned by GPartModel once all layers exist (model order).
        weight_numel = self.weight_in_storage.numel()  # unpacked, for a quantized base
        self.gpart_slot[adapter_name] = LayerSlot(-1, weight_numel, bias_numel)
        self._forget_term(adapter_name)
        self.set_adapter(self.active_adapters)

    def set_offset(self, adapter_name: str, offset: int, materialize: bool, block: int = 0) -> None:
        self.gpart_slot[adapter_name].offset = offset
        self.gpart_slot[adapter_name].block = block
        if adapter_name in self.gpart_ids:
            del self.gpart_ids[adapter_name]
        self.drop_fastfood_cache(adapter_name)
        if materialize:
            self.materialize_ids(adapter_name)
        partition, offset, _ = self._projection(adapter_name)
        if isinstance(partition, FastfoodProjection):
            device = self.weight_in_storage.device
            cache = partition.cache(
                offset, self.gpart_slot[adapter_name].numel, device=_real(device)
            )
            if cache is not None:
                self.gpart_ff_sign[adapter_name] = cache.sign
                self.gpart_ff_gauss[adapter_name] = cache.gauss
                self.gpart_ff_perm[adapter_name] = cache.perm

    def drop_fastfood_cache(self, adapter_name: str) -> None:
        self._forget_term(adapter_name)  # (set_offset's too: it calls this)
        for attr in self._FASTFOOD_BUFFERS:
            if adapter_name in getattr(self, attr):
                del getattr(self, attr)[adapter_name]

    def _fastfood_cache(
        self, adapter_name: str, partition: FastfoodProjection, offset: int
    ) -> FastfoodCache | None:
        if adapter_name not in self.gpart_ff_sign:
            return None
        return FastfoodCache(
            k0=offset // partition.length,
            sign=self.gpart_ff_sign[adapter_name],
            gauss=self.gpart_ff_gauss[adapter_name],
            perm=self.gpart_ff_perm[adapter_name],
        )

    def _projection(self, adapter_name: str) -> tuple[Partition | FastfoodProjection, int, int]:
        """(partition of this layer's block, offset inside the block, block's theta start)."""
        slot = self.gpart_slot[adapter_name]
        partition = self._gpart_shared.partitions[adapter_name]
        if isinstance(partition, ScopedPartition):
            block = partition.blocks[slot.block]
            return block.projection, slot.offset - block.start, block.theta_start
        return partition, slot.offset, 0

    def materialize_ids(self, adapter_name: str) -> None:
        slot = self.gpart_slot[adapter_name]
        partition, offset, _ = self._projection(adapter_name)
        ids = partition.group_ids(offset, slot.numel, device=_real(self.weight_in_storage.device))
        self.set_ids(adapter_name, ids)

    def set_ids(self, adapter_name: str, ids: torch.Tensor) -> None:
        """Cache the group ids of this layer's entries (ids inside its block's groups)."""
        device = _real(self.weight_in_storage.device)
        self.gpart_ids[adapter_name] = ids.to(device=device, dtype=torch.int32)
        self._forget_term(adapter_name)

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device=None) -> None:
        # theta stays fp32 on the tuner; only the id cache follows the base layer's device.
        target = device if device is not None else self.weight_in_storage.device
        if target.type == "meta":
            return
        self._forget_term(adapter_name)
        for attr in ("gpart_ids", *self._FASTFOOD_BUFFERS):
            buffers = getattr(self, attr)
            if adapter_name in buffers:
                buffers[adapter_name] = buffers[adapter_name].to(target)

    def _term(self, adapter_name: str, training: bool) -> AdapterTerm:
        """The adapter's term for one call (its forward and backward share it)."""
        dropout = self.gpart_dropout[adapter_name] if training else 0.0
        if dropout > 0.0:  # a new dropout key per call
            return self._build_term(adapter_name, dropout)
        return self._kept_term(adapter_name).for_call()

    def _kept_term(self, adapter_name: str) -> AdapterTerm:
        """The adapter's term without dropout, built once and reused while it is current.

        Building one costs several lookups through nn.Module's attribute machinery, at every
        call of every adapted layer: where kernel launches dominate that is a visible part of
        a step (docs/performance.md, "Launch-bound layers"). The kept term is rebuilt when
        a tensor it holds is no longer the adapter's (a new theta, scales moved by `.to()`,
        new ids: checked by identity at each use) or when the layer's layout changes
        (`_forget_term`: offsets, ids, Fastfood caches, `update_layer`)."""
        shared = self._gpart_shared
        kept = self._gpart_kept_terms.get(adapter_name)
        ids = self.gpart_ids._buffers.get(adapter_name)
        if (
            kept is not None
            and kept.theta is shared.theta._parameters.get(adapter_name)
            and kept.scales is shared.scales._buffers.get(adapter_name)
            and kept.ids is ids
        ):
            return kept
        kept = self._build_term(adapter_name, 0.0)
        if not kept.dense:  # Fastfood's cached blocks are not checked here: built per call
            self._gpart_kept_terms[adapter_name] = kept
        return kept

    def _forget_term(self, adapter_name: str) -> None:
        self._gpart_kept_terms.pop(adapter_name, None)

    def _build_term(self, adapter_name: str, dropout: float) -> AdapterTerm:
        shared = self._gpart_shared
        slot = self.gpart_slot[adapter_name]
        key = None
        if dropout > 0.0 and torch.compiler.is_compiling():
            # in the graph, never read back by the host (custom_ops' module doc)
            key = custom_ops.dropout_key(_real(self.weight_in_storage.device))
        elif dropout > 0.0:
            # drawn from torch's global RNG, so torch.manual_seed reproduces the masks
            key = int(torch.randint(0, 2**62, (1,)).item())
        gpart_ids = self.gpart_ids  # (a submodule: one lookup through nn.Module, not two)
        ids = gpart_ids[adapter_name] if adapter_name in gpart_ids else None
        partition, offset, theta_start = self._projection(adapter_name)
        fastfood = None
        if isinstance(partition, FastfoodProjection):
            fastfood = self._fastfood_cache(adapter_name, partition, offset)
        return AdapterTerm(
            theta=shared.theta[adapter_name],
            scales=shared.scales[adapter_name],
            partition=partition,
            offset=offset,
            theta_start=theta_start,
            weight_numel=slot.weight_numel,
            bias_numel=slot.bias_numel,
            ids=ids,
            dropout=dropout,
            dropout_key=key,
            fastfood=fastfood,
        )

    def _active_terms(self) -> list[AdapterTerm]:
        return [
            self._term(name, self.training)
            for name in self.active_adapters
            if name in self.gpart_slot and name in self._gpart_shared.theta
        ]

    # ----------------------------------------------------------------- peft vocabulary
    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """dW of this layer, in the weight's storage layout and dtype."""
        weight = self.weight_in_storage
        dw, _ = self._term(adapter_name, training=False).delta(weight.shape, weight.device)
        return dw.to(weight.dtype)

    def get_delta_bias(self, adapter_name: str) -> torch.Tensor | None:
        weight = self.weight_in_storage
        _, db = self._term(adapter_name, training=False).delta(weight.shape, weight.device)
        return None if db is None else db.to(self.get_base_layer().bias.dtype)

    def _weight_for_merge(self) -> torch.Tensor:
        """W0 as merging reads it (a quantized layer's: dequantized)."""
        return self.get_base_layer().weight.data

    def _store_merged_weight(self, weight: torch.Tensor) -> None:
        """Put a merged (or unmerged) weight into the base layer."""
        self.get_base_layer().weight.data = weight

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        adapter_names = check_adapters_to_merge(self, adapter_names)
        base = self.get_base_layer()
        for name in adapter_names:
            if name not in self.gpart_slot:
                continue
            # The forward's own sum (fp32, rounded once to the weight's dtype), so the merged
            # model computes exactly what the unmerged one did, also in bf16/fp16.
            term = self._term(name, training=False)
            new_w, new_b, _ = merged_weight(
                self._weight_for_merge(), base.bias.data if term.bias_numel else None, [term]
            )
            if safe_merge and not (
                torch.isfinite(new_w).all() and (new_b is None or torch.isfinite(new_b).all())
            ):
                raise ValueError(f"NaNs or infs in the merged weights of adapter {name!r}.")
            self._store_merged_weight(new_w)
            if new_b is not None:
                base.bias.data = new_b
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Subtract the merged updates. Exact up to rounding: in bf16/fp16 `(W0 + dW) - dW`
        can differ from `W0` by one unit in the last place (as for every peft method)."""
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        base = self.get_base_layer()
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name not in self.gpart_slot:
                continue
            w = self._weight_for_merge()
            self._store_merged_weight(w - self.get_delta_weight(name).to(w.dtype))
            db = self.get_delta_bias(name)
            if db is not None:
                base.bias.data -= db

    def _adapted_forward(self, x: torch.Tensor, terms: list[AdapterTerm]) -> torch.Tensor:
        raise NotImplementedError  # each wrapper implements its op

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        terms = self._active_terms()
        if not terms:
            return self.base_layer(x, *args, **kwargs)
        return self._adapted_forward(x, terms, *args, **kwargs)

    def __repr__(self) -> str:
        return "gpart." + super().__repr__()


def _real(device: torch.device) -> torch.device:
    """Where injection-time caches are built: the weight's device, CPU for a meta one."""
    return torch.device("cpu") if device.type == "meta" else device


class _GPartModule(nn.Module, GPartLayer):
    """The nn.Module side shared by every wrapper; subclasses implement `_adapted_forward`."""

    # Biases of this layer type can join the partition (Embedding has none).
    supports_bias: bool = True

    def __init__(
        self,
        base_layer: nn.Module,
        shared: GPartShared,
        adapter_name: str,
        dropout: float = 0.0,
        adapt_bias: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        GPartLayer.__init__(self, base_layer, shared, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, dropout, adapt_bias and self.supports_bias)

    forward = GPartLayer.forward  # nn.Module's placeholder forward comes first in the MRO


class Linear(_GPartModule):
    """nn.Linear, or transformers' Conv1D when `fan_in_fan_out` (weight stored [in, out])."""

    def __init__(
        self, base_layer: nn.Module, *args: Any, fan_in_fan_out: bool = False, **kwargs: Any
    ) -> None:
        self.fan_in_fan_out = fan_in_fan_out  # plain attribute: safe before nn.Module.__init__
        super().__init__(base_layer, *args, **kwargs)

    def _adapted_forward(self, x, terms, *args, **kwargs):
        base = self.get_base_layer()
        return custom_ops.gpart_linear(
            x, base.weight, base.bias, terms, transposed=self.fan_in_fan_out
        )


class Conv2d(_GPartModule):
    def _adapted_forward(self, x, terms, *args, **kwargs):
        base = self.get_base_layer()
        if base.padding_mode != "zeros":
            # As nn.Conv2d does it: pad explicitly, then convolve without padding.
            x = F.pad(x, base._reversed_padding_repeated_twice, mode=base.padding_mode)
            padding = (0, 0)
        else:
            padding = base.padding
        op, op_ints = custom_ops.conv2d_op(base.stride, padding, base.dilation, base.groups)
        return custom_ops.gpart_generic(x, base.weight, base.bias, terms, op, op_ints, [])


class Embedding(_GPartModule):
    supports_bias = False

    def _adapted_forward(self, x, terms, *args, **kwargs):
        base = self.get_base_layer()
        # No padding_idx: it only zeroes the padding row's weight gradient, but dW of that
        # row does reach the output, so theta's gradient must see it (the forward is the
        # same either way). No sparse: theta's gradient needs the dense grad_W.
        op, op_ints, op_floats = custom_ops.embedding_op(
            base.max_norm, base.norm_type, base.scale_grad_by_freq
        )
        out = custom_ops.gpart_generic(x, base.weight, None, terms, op, op_ints, op_floats)
        embed_scale = self._get_embed_scale()
        return out * embed_scale.to(out.dtype) if embed_scale is not None else out
