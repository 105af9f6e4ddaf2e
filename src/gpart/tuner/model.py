"""`GPartModel`: the peft tuner that injects GPart layers and owns `theta`."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, ModulesToSaveWrapper
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn
from transformers.pytorch_utils import Conv1D

import gpart.tuner.arithmetic as arithmetic
import gpart.tuner.ops as ops
from gpart.tuner.config import GPartConfig
from gpart.tuner.fastfood import FastfoodProjection, release_reference_tables
from gpart.tuner.groupings import seeded_randint_ids, signed_magnitude_ids
from gpart.tuner.layer import Conv2d, Embedding, GPartLayer, GPartShared, Linear
from gpart.tuner.partition import Partition
from gpart.tuner.schemes import follows_reference
from gpart.tuner.scope import ScopeBlock, ScopedPartition, block_seed, split_evenly

# GPart's default targets are the attention query/value projections, exactly LoRA's defaults.
TARGET_MODULES_MAPPING = dict(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
SUPPORTED_TYPES = (
    "nn.Linear, transformers Conv1D, nn.Conv2d, nn.Embedding, bitsandbytes Linear4bit and "
    "Linear8bitLt"
)


def direct_bias_names(model: nn.Module) -> list[str]:
    """Parameter names of the biases `bias="all"` trains directly: every bias except those of
    adapted layers (their update comes from theta) and those inside auxiliary wrappers such
    as the classifier head's ModulesToSaveWrapper (peft trains and saves those itself)."""
    skip = [
        n
        for n, m in model.named_modules()
        if isinstance(m, (GPartLayer, AuxiliaryTrainingWrapper)) and n
    ]
    return [
        name
        for name, _ in model.named_parameters()
        if (name == "bias" or name.endswith(".bias"))
        and not any(name.startswith(prefix + ".") for prefix in skip)
    ]


def _set_direct_biases_trainable(model: nn.Module, trainable: bool) -> None:
    params = dict(model.named_parameters())
    for name in direct_bias_names(model):
        params[name].requires_grad_(trainable)


# Names of the container whose numbered children are the transformer blocks, as in peft's
# layers_pattern defaults (BERT/RoBERTa `layer`, Llama `layers`, GPT-2 `h`, T5 `block`).
BLOCK_CONTAINERS = ("layers", "layer", "h", "block", "blocks")
# theta's attribute, hence its checkpoint key `base_model.gpart_theta_d` (the reference
# implementation's); adapters saved by earlier versions of gpart call it `gpart_theta`.
THETA = "gpart_theta_d"
LEGACY_THETA = "gpart_theta"
EXTRA_BLOCK = "(modules outside the blocks)"
# The name FSDP(1) gives the module it wraps (torch.distributed.fsdp's FSDP_WRAPPED_MODULE).
FSDP_PREFIX = "_fsdp_wrapped_module."


def _transformer_blocks(
    named: list[tuple[str, GPartLayer]], config: GPartConfig
) -> list[tuple[str, list[GPartLayer]]]:
    """The adapted layers grouped by transformer block, blocks in natural numeric order."""
    pattern = config.layers_pattern
    names = (pattern,) if isinstance(pattern, str) else tuple(pattern or BLOCK_CONTAINERS)
    if follows_reference(config.scheme_version):
        return _reference_blocks(named, names)
    return _legacy_blocks(named, names)


def _block_of(name: str, names: tuple[str, ...]) -> str | None:
    """The block a module belongs to: its name up to the first component named like a
    container (`names`) that is followed by a number, e.g. ``model.layers.3``."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i] in names and parts[i + 1].isdigit():
            return ".".join(parts[: i + 2])
    return None


def _natural_key(path: str) -> tuple:
    return tuple((0, int(c)) if c.isdigit() else (1, c) for c in path.split("."))


def _reference_blocks(named, names):
    """The blocks under the reference's definitions, as it resolves them: each targeted
    module's block by `_block_of` (blocks of different containers are all blocks), in natural
    path order; a targeted module outside every block is an error."""
    blocks: dict[str, list[GPartLayer]] = {}
    for name, layer in named:
        block = _block_of(name, names)
        if block is None:
            raise ValueError(
                f"GPart partition_scope='transformer_block': the targeted module {name!r} is "
                f"in no numbered transformer block (containers: {', '.join(names)}). Narrow "
                "target_modules (or add it to exclude_modules), set layers_pattern to the "
                "model's block container, or use partition_scope='global'."
            )
        blocks.setdefault(block, []).append(layer)
    return [(b, blocks[b]) for b in sorted(blocks, key=_natural_key)]


def _legacy_blocks(named, names):
    """Scheme 1: the first container (in model order) holding an adapted module under a
    numbered child; its numbered children are the blocks, and adapted modules outside every
    block (e.g. a pooler with 'all-linear') form one extra block, last."""
    container = None
    for name, _ in named:
        block = _block_of(name, names)
        if block is not None:
            container = block.rsplit(".", 1)[0]
            break
    if container is None:
        raise ValueError(
            "GPart partition_scope='transformer_block' found no container named "
            f"{', '.join(names)} with numbered children holding target modules; set "
            "layers_pattern to the name of the model's block list, or use partition_scope='global'."
        )
    prefix = container + "."
    blocks: dict[int, list[GPartLayer]] = {}
    extra: list[GPartLayer] = []
    for name, layer in named:
        rest = name[len(prefix) :].split(".", 1)[0] if name.startswith(prefix) else ""
        if rest.isdigit():
            blocks.setdefault(int(rest), []).append(layer)
        else:
            extra.append(layer)
    groups = [(f"{container}.{i}", blocks[i]) for i in sorted(blocks)]
    if extra:
        groups.append((EXTRA_BLOCK, extra))
    return groups


class GPartModel(BaseTuner):
    """Creates a GPart adapter around a model (see `GPartConfig`).

    Model-level state: `gpart_theta_d[adapter]` (the only trainable tensor of the method, fp32)
    and the derived group scales `gpart_scales[adapter]` (recomputed, never saved); the
    partitions and both dicts are reachable as `gpart_shared`, which every layer references.
    The global adapted space is laid out after injection by walking the model's modules in
    order, so offsets, sizes and scales are recomputed identically on reload.
    """

    prefix: str = "gpart_"
    tuner_layer_cls = GPartLayer
    target_module_mapping = TARGET_MODULES_MAPPING
    uses_shared_state: bool = True

    # ------------------------------------------------------------------ shared state
    def _shared(self) -> GPartShared:
        if "gpart_shared" not in self.__dict__:
            shared = GPartShared()
            self.__dict__["gpart_shared"] = shared
            # Registered here: saved once, moves with .to(). The name is the reference
            # implementation's, so the saved key is its `base_model.gpart_theta_d`.
            self.gpart_theta_d = shared.theta
            self.gpart_scales = shared.scales
        return self.__dict__["gpart_shared"]

    def _pre_injection_hook(self, model: nn.Module, config: GPartConfig, adapter_name: str) -> None:
        self._shared()

    def _prepare_adapter_config(self, peft_config: GPartConfig, model_config: dict) -> GPartConfig:
        if peft_config.target_modules is None:
            model_type = model_config.get("model_type")
            if model_type not in self.target_module_mapping:
                raise ValueError(
                    f"GPart has no default target modules for model type {model_type!r}: pass "
                    "target_modules, e.g. ['q_proj', 'v_proj'] or 'all-linear'."
                )
            peft_config.target_modules = set(self.target_module_mapping[model_type])
        return peft_config

    def _check_new_adapter_config(self, config: GPartConfig) -> None:
        # Not BaseTuner's check: it refuses a second adapter with any bias other than "none"
        # because LoRA's bias trains the raw biases, which adapters cannot share. GPart's
        # bias="gpart_only" puts the biases' update into each adapter's own theta, so only
        # bias="all" (raw biases trained directly) conflicts with another adapter.
        with_bias = [n for n, c in self.peft_config.items() if c.bias == "all"]
        if len(with_bias) > 1:
            raise ValueError(
                f"GPart adapters {with_bias} all use bias='all', which trains the model's raw "
                "biases directly; only one adapter of a model may do so. Use bias='gpart_only' "
                "(the biases' update then lives in each adapter's theta) or bias='none' for the others."
            )

    # ------------------------------------------------------------------ injection
    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key):
        adapt_bias = config.bias in ("gpart_only", "all")
        if isinstance(target, GPartLayer):
            target.update_layer(adapter_name, config.gpart_dropout, adapt_bias)
            return
        new_module = self._create_new_module(config, adapter_name, target, current_key, adapt_bias)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _create_new_module(self, config, adapter_name, target, key, adapt_bias):
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        kwargs = dict(
            shared=self._shared(),
            adapter_name=adapter_name,
            dropout=config.gpart_dropout,
            adapt_bias=adapt_bias,
        )
        if "bitsandbytes" in sys.modules:  # a model with bitsandbytes layers has imported it
            from gpart.tuner.bnb import QuantLinear, is_bnb_layer

            if is_bnb_layer(base):
                return QuantLinear(target, **kwargs)
        if isinstance(base, nn.Linear):
            weight = base.weight
            if not weight.is_floating_point() or weight.shape != (
                base.out_features,
                base.in_features,
            ):
                # e.g. another quantizer's subclass of nn.Linear with packed storage
                raise ValueError(
                    f"GPart cannot adapt module {key!r} of type {type(base).__module__}."
                    f"{type(base).__name__}: its weight is stored as {weight.dtype} of shape "
                    f"{tuple(weight.shape)}, not a float [out_features, in_features] matrix. "
                    f"Supported: {SUPPORTED_TYPES}. Remove it from target_modules (or add it "
                    "to exclude_modules)."
                )
            return Linear(target, fan_in_fan_out=False, **kwargs)
        if isinstance(base, Conv1D):
            return Linear(target, fan_in_fan_out=True, **kwargs)
        if isinstance(base, nn.Conv2d):
            return Conv2d(target, **kwargs)
        if isinstance(base, nn.Embedding):
            return Embedding(target, **kwargs)
        raise ValueError(
            f"GPart cannot adapt module {key!r} of type {type(base).__name__}; supported types: "
            f"{SUPPORTED_TYPES}. Remove it from target_modules (or add it to exclude_modules)."
        )

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        # peft 0.21.2's BaseTuner._replace_module assumes a LoRA-style child when unloading a
        # ModulesToSaveWrapper (e.g. RobertaForSequenceClassification's classifier) and fails
        # in merge_and_unload(); non-tuner replacements are a plain setattr.
        if isinstance(child, ModulesToSaveWrapper) or not isinstance(new_module, GPartLayer):
            setattr(parent, child_name, new_module)
            return
        super()._replace_module(parent, child_name, new_module, child)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._enable_peft_forward_hooks():
            return super().forward(*args, **kwargs)

    @contextlib.contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        # Every layer of one forward shares `s * theta` (`ops.coef_scope`). peft's
        # `PeftModel` enters this around each forward and `generate` (its plain forward calls
        # the wrapped model, not ours). Compiled, the forward is traced instead (the layers
        # are custom ops): no scope there.
        if torch.compiler.is_compiling():
            yield
            return
        with ops.coef_scope():
            yield

    def inject_adapter(
        self,
        model,
        adapter_name,
        autocast_adapter_dtype=True,
        low_cpu_mem_usage=False,
        state_dict=None,
    ):
        # Adapters are keys of nn.ParameterDict / nn.ModuleDict (theta, peft's per-layer
        # dicts), which refuse or shadow their own attribute names ("copy", "keys", ...):
        # say so before anything is built instead of failing deep inside torch.
        if hasattr(nn.ParameterDict, adapter_name) or hasattr(nn.ModuleDict, adapter_name):
            raise ValueError(
                f"adapter name {adapter_name!r} is an attribute of torch's ParameterDict / "
                "ModuleDict, which hold adapters by name; choose another name"
            )
        # theta lives on the tuner, outside `model`, so peft's inject_adapter, which keeps the
        # trainability of parameters already in the model, cannot see it: its set_adapter
        # would flip the other adapters' theta (e.g. loading one with is_trainable=False).
        theta = self._shared().theta
        kept_flags = {name: p.requires_grad for name, p in theta.items() if name != adapter_name}
        try:
            super().inject_adapter(
                model,
                adapter_name,
                autocast_adapter_dtype=autocast_adapter_dtype,
                low_cpu_mem_usage=low_cpu_mem_usage,
                state_dict=None,  # GPart's checkpoint names no modules: the config does
            )
        except ValueError as err:
            if "No modules were targeted" not in str(err):
                raise
            raise ValueError(self._no_match_message(model, adapter_name)) from err
        finally:
            for name, flag in kept_flags.items():
                if name in theta:
                    theta[name].requires_grad_(flag)
        try:
            self._layout_adapter(model, adapter_name)
        except Exception:
            # e.g. d larger than the adapted space: leave the user's model as it was.
            self._undo_injection(model, adapter_name)
            raise
        self._guard_cpu_layouts(model)
        if self.peft_config[adapter_name].inference_mode:
            # peft freezes adapter parameters inside its inject_adapter, before theta exists
            # (and it knows nothing of bias='all'): freeze what this adapter trains here.
            self._shared().theta[adapter_name].requires_grad_(False)
            if self.peft_config[adapter_name].bias == "all":
                _set_direct_biases_trainable(model, False)

    def _guard_cpu_layouts(self, model: nn.Module) -> None:
        """On a bitsandbytes 4-bit base, restore its training layout before every forward
        with gradients (`gpart.tuner.bnb.unpack_cpu_layout`): an inference forward repacks
        the weights on some CPUs, after which training would pass no gradient to the layers
        below, silently. Once per model; a flag check per layer when nothing was repacked."""
        if "bitsandbytes" not in sys.modules or getattr(model, "_gpart_layout_guard", False):
            return
        from gpart.tuner.bnb import QuantLinear, is_bnb_layer, unpack_cpu_layout

        if not any(isinstance(m, QuantLinear) for m in model.modules()):
            return
        # Found once: adapters wrap these layers but never replace them.
        layers = [m for m in model.modules() if is_bnb_layer(m)]

        def restore(module: nn.Module, args: tuple) -> None:
            if torch.is_grad_enabled():
                for layer in layers:
                    unpack_cpu_layout(layer)

        model.register_forward_pre_hook(restore)
        model._gpart_layout_guard = True

    def _undo_injection(self, model: nn.Module, adapter_name: str) -> None:
        """Remove what injecting `adapter_name` added: its entries in shared layers, the
        layers (and, for a model's only adapter, the head wrappers) created for it."""
        first = all(name == adapter_name for name in self.peft_config)
        restore: list[tuple[str, nn.Module]] = []  # (module name, what goes back there)
        for name, module in model.named_modules():
            if isinstance(module, GPartLayer) and adapter_name in module.gpart_slot:
                for attr in ("gpart_slot", "gpart_dropout", "gpart_adapt_bias"):
                    getattr(module, attr).pop(adapter_name, None)
                if adapter_name in module.gpart_ids:
                    del module.gpart_ids[adapter_name]
                module.drop_fastfood_cache(adapter_name)
                if not module.gpart_slot:
                    restore.append((name, module.get_base_layer()))
            elif isinstance(module, AuxiliaryTrainingWrapper):
                if first:
                    restore.append((name, module.original_module))
                else:
                    module.delete_adapter(adapter_name, new_active_adapters=None)
        for name, original in restore:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, original)
        self._drop_shared(adapter_name)

    def _drop_shared(self, adapter_name: str) -> None:
        """Forget the adapter's model-level state: theta, scales, partition."""
        shared = self._shared()
        shared.partitions.pop(adapter_name, None)
        for table in (shared.theta, shared.scales):
            if adapter_name in table:
                del table[adapter_name]

    def _no_match_message(self, model: nn.Module, adapter_name: str) -> str:
        config = self.peft_config[adapter_name]
        names = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, m in model.named_modules()
                if isinstance(m, (nn.Linear, Conv1D, nn.Conv2d, nn.Embedding))
            }
        )
        return (
            f"GPart target_modules={config.target_modules!r} (exclude_modules="
            f"{config.exclude_modules!r}) matched no module of {type(model).__name__}. "
            f"Adaptable module names in this model: {', '.join(names)}; or use 'all-linear'."
        )

    def _layout_adapter(self, model: nn.Module, adapter_name: str) -> None:
        """Assign offsets, check `d`, create theta and the group scales.

        Global scope: one adapted space, modules in model order. ``transformer_block``:
        one space per block (see `_transformer_blocks`), laid out block after block, each
        with its own slice of theta, partition (or Fastfood map), seed and scales.
        """
        config: GPartConfig = self.peft_config[adapter_name]
        named = [
            (n, m)
            for n, m in model.named_modules()
            if isinstance(m, GPartLayer) and adapter_name in m.gpart_slot
        ]
        if not named:
            raise ValueError(
                f"GPart target_modules={config.target_modules!r} matched no module of the model."
            )
        layers = [m for _, m in named]
        total = sum(layer.gpart_slot[adapter_name].numel for layer in layers)
        if config.d > total:
            raise ValueError(
                f"GPartConfig.d={config.d} is larger than the {total} adapted entries of the target "
                f"modules; choose d <= {total} or target more modules (e.g. target_modules='all-linear')."
            )
        scoped = config.partition_scope != "global"
        groups = _transformer_blocks(named, config) if scoped else [("", layers)]
        shared = self._shared()
        device = next(
            (w.device for w in (m.weight_in_storage for m in layers) if w.device.type != "meta"),
            torch.device("cpu"),
        )
        shares = split_evenly(config.d, len(groups))
        blocks: list[ScopeBlock] = []
        scales: list[torch.Tensor] = []
        block_ids: list[torch.Tensor | None] = []
        start = theta_start = 0
        for b, ((block_name, block_layers), d_b) in enumerate(zip(groups, shares, strict=True)):
            n_b = sum(layer.gpart_slot[adapter_name].numel for layer in block_layers)
            if not 0 < d_b <= n_b:
                raise ValueError(
                    f"GPart partition_scope='transformer_block': block {block_name} has {n_b} "
                    f"adapted entries and its share of d={config.d} over {len(groups)} blocks "
                    f"is {d_b}; each block needs 1 <= share <= its entries. Choose d between "
                    f"{len(groups)} and {len(groups)} x the smallest block, or "
                    "partition_scope='global'."
                )
            seed = (
                block_seed(config.proj_seed, b, config.scheme_version)
                if scoped
                else config.proj_seed
            )
            projection, sizes, ids = self._block_projection(
                config, adapter_name, block_layers, n_b, d_b, seed, device
            )
            if sizes is not None:
                self._warn_empty_groups(config, adapter_name, sizes, n_b, block_name)
            if isinstance(projection, Partition):
                scales.append(projection.scales(config.isometric, device, sizes, scoped=scoped))
            else:
                scales.append(projection.scales(config.isometric, device))
            blocks.append(ScopeBlock(block_name, start, theta_start, projection))
            block_ids.append(ids)
            start += n_b
            theta_start += d_b
        if not scoped:
            shared.partitions[adapter_name] = blocks[0].projection
            shared.scales[adapter_name] = scales[0]
        else:
            shared.partitions[adapter_name] = ScopedPartition(tuple(blocks))
            shared.scales[adapter_name] = torch.cat(scales)
        if adapter_name not in shared.theta:
            theta = torch.zeros(config.d, dtype=torch.float32, device=device)
            if config.init_bound > 0:
                theta.uniform_(-config.init_bound, config.init_bound)
            shared.theta[adapter_name] = nn.Parameter(
                theta, requires_grad=adapter_name in self.active_adapters
            )
        offset = 0
        for b, ((_, block_layers), ids, block) in enumerate(
            zip(groups, block_ids, blocks, strict=True)
        ):
            projection = block.projection
            # Positional ids are cached on request; the others (ids is not None) always are.
            materialize = (
                config.assignment_backend == "materialized"
                and isinstance(projection, Partition)
                and projection.positional
            )
            local = 0
            for layer in block_layers:
                numel = layer.gpart_slot[adapter_name].numel
                layer.set_offset(adapter_name, offset, materialize, block=b)
                if ids is not None:
                    layer.set_ids(adapter_name, ids[local : local + numel])
                offset += numel
                local += numel
        # Every layer now holds the Fastfood randoms of its own blocks.
        release_reference_tables()

    def _block_projection(self, config, adapter_name, layers, total, d, seed, device):
        """(partition or Fastfood map, group sizes or None, stored ids or None) of a block:
        ids for the groupings whose ids are not a function of the position."""
        scheme = config.scheme_version
        if config.projection_type == "fastfood":
            return FastfoodProjection(total=total, d=d, seed=seed, scheme=scheme), None, None
        partition = Partition(
            total=total,
            d=d,
            seed=seed,
            grouping=config.grouping_strategy,
            scheme=scheme,
            assignment=config.assignment_backend,
        )
        if partition.positional:
            return partition, partition.group_sizes(device=device), None
        if config.grouping_strategy == "random":  # the reference's materialized draw
            numels = [layer.gpart_slot[adapter_name].numel for layer in layers]
            ids = torch.cat(seeded_randint_ids(numels, d, seed))
            return partition, torch.bincount(ids, minlength=d), ids
        values = []
        for layer in layers:
            base = layer.get_base_layer()
            params = [layer.weight_in_storage]
            if layer.gpart_slot[adapter_name].bias_numel:
                params.append(base.bias)
            for p in params:
                if p.device.type == "meta":
                    raise ValueError(
                        "GPart grouping_strategy='signed_magnitude' groups the base weights by "
                        "sign and magnitude, so they must be loaded (not on the meta device) "
                        "when the adapter is created or reloaded."
                    )
                values.append(p.detach().reshape(-1).to(device))
        ids, sizes = signed_magnitude_ids(torch.cat(values), d, scheme)
        return partition, sizes, ids

    def _warn_empty_groups(self, config, adapter_name, sizes, total, block_name) -> None:
        empty = int((sizes == 0).sum())
        if not empty:
            return
        where = f" in block {block_name}" if block_name else ""
        # Random grouping draws groups i.i.d.: with d close to the adapted size some stay
        # empty, and their theta entries change nothing (||dW|| < ||theta|| then).
        warnings.warn(
            f"GPart adapter {adapter_name!r}: {empty} of d={sizes.numel()} groups{where} are "
            f"empty ({total} adapted entries, grouping_strategy={config.grouping_strategy!r}); their theta "
            "entries have no effect. Use grouping_strategy='balanced' or a smaller d.",
            UserWarning,
            stacklevel=3,
        )

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        """theta's dtype, as peft sets every method's adapter dtype: fp32 by default (theta is
        created fp32), the adapted weights' dtype with ``autocast_adapter_dtype=False``.

        theta is one tensor for all adapted layers, so it takes their dtype only when they
        agree (a model with some modules kept in fp32 keeps an fp32 theta). The forward
        accumulates in fp32 from theta of any dtype.
        """
        theta = self._shared().theta
        if adapter_name not in theta:
            return
        if autocast_adapter_dtype:
            dtype = torch.float32
        else:
            dtypes = {
                m.weight_in_storage.dtype
                for m in self.model.modules()
                if isinstance(m, GPartLayer) and adapter_name in m.gpart_slot
            }
            if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
                return
            dtype = dtypes.pop()
        old = theta[adapter_name]
        if old.dtype != dtype and old.dtype != torch.float64:
            theta[adapter_name] = nn.Parameter(
                old.detach().to(dtype), requires_grad=old.requires_grad
            )

    # ------------------------------------------------------------------ trainability
    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        # Wrappers such as ModulesToSaveWrapper (the classifier head) manage their own flags.
        aux = [n for n, m in model.named_modules() if isinstance(m, AuxiliaryTrainingWrapper)]
        for name, param in model.named_parameters():
            if f"{THETA}." in name or any(name.startswith(a + ".") for a in aux):
                continue
            param.requires_grad = False
        if any(self.peft_config[a].bias == "all" for a in self.active_adapters):
            # bias='all': biases of adapted layers come from theta; every other bias trains directly.
            _set_direct_biases_trainable(model, True)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self._drop_shared(adapter_name)

    # ------------------------------------------------------------------ adapter arithmetic
    def add_weighted_adapter(
        self,
        adapters: list[str],
        weights: list[float],
        adapter_name: str,
        combination_type: Literal[
            "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"
        ] = "linear",
        svd_rank: int | None = None,
        svd_clamp: int | None = None,
        svd_full_matrices: bool = True,
        svd_driver: str | None = None,
        density: float | None = None,
        majority_sign_method: Literal["total", "frequency"] = "total",
    ) -> None:
        """Add adapter `adapter_name` whose theta combines the thetas of `adapters`.

        peft's `LoraModel.add_weighted_adapter`, for adapters that share one partition `P`
        (same `d`, seed, targets, scope, grouping, projection, scheme and bias layout):
        `dW = P theta` is linear, so ``"linear"`` gives exactly `sum_i w_i dW_i` (a model soup
        when the weights sum to one, task arithmetic otherwise). ``"ties"``, ``"dare_linear"``,
        ``"dare_ties"`` and ``"magnitude_prune"`` are peft's `merge_utils` functions applied
        to the thetas, so pruning ranks the entries of each adapter's whole theta (one vector
        for the model), not of each layer. The new adapter is added but not activated
        (`set_adapter` it), and it is frozen.

        Differences from LoRA's version, each so that nothing happens silently: the default
        is ``"linear"`` (exact; LoRA's default ``"svd"`` and ``"cat"`` refactor low-rank
        factors, which GPart has not, and are refused with the reason); an existing
        `adapter_name` is an error, not a silent no-op; one adapter is combined as asked,
        not switched to ``"linear"``; `density` or `majority_sign_method` given to a type
        that ignores them is an error. Two adapters that each train their own copy of a
        module (`modules_to_save`, e.g. a classifier head) are refused, as by LoRA: a
        trained module is no update that can be weighted. If only one of them trains it,
        the new adapter takes that trained copy, unweighted (LoRA gives it an untrained copy
        of the original). `bias="all"` trains the model's biases in place, outside theta,
        and is refused.

        Args:
            adapters: Names of the adapters to combine (at least one).
            weights: One weight per adapter; negative weights subtract.
            adapter_name: Name of the new adapter (not an existing one).
            combination_type: ``"linear"``, ``"ties"``, ``"dare_linear"``, ``"dare_ties"``
                or ``"magnitude_prune"``.
            svd_rank: LoRA's; must stay None.
            svd_clamp: LoRA's; must stay None.
            svd_full_matrices: LoRA's; must stay True.
            svd_driver: LoRA's; must stay None.
            density: Fraction of each theta's entries kept, in (0, 1], for the pruning types.
                The DARE types draw their masks with `torch.bernoulli` from torch's global
                RNG (`torch.manual_seed` before the call reproduces them).
            majority_sign_method: ``"total"`` or ``"frequency"``, for ``"ties"`` and
                ``"dare_ties"``.

        Raises:
            ValueError: a name that does not exist or already does, weights that do not match
                the adapters, adapters that do not share a partition (naming the field), a
                combination type or option that does not apply to theta vectors.
        """
        adapters, weights = list(adapters), list(weights)
        arithmetic.check_arguments(
            combination_type,
            density,
            majority_sign_method,
            {
                "svd_rank": (svd_rank, None),
                "svd_clamp": (svd_clamp, None),
                "svd_full_matrices": (svd_full_matrices, True),
                "svd_driver": (svd_driver, None),
            },
        )
        shared = self._shared()
        owners = arithmetic.check_sources(
            self.model, shared, self.peft_config, adapters, weights, adapter_name
        )
        first = adapters[0]
        # Combined before the injection, whose init_bound draw would otherwise come between
        # torch.manual_seed and DARE's masks (both use the global RNG).
        combined = arithmetic.combine(
            [shared.theta[a] for a in adapters],
            weights,
            combination_type,
            density,
            majority_sign_method,
        )
        to_save = [m for a in adapters for m in (self.peft_config[a].modules_to_save or ()) if m]
        self.peft_config[adapter_name] = dataclasses.replace(
            self.peft_config[first], modules_to_save=list(dict.fromkeys(to_save)) or None
        )
        try:
            self.inject_adapter(self.model, adapter_name)
        except Exception:
            del self.peft_config[adapter_name]
            raise
        reason = arithmetic.partition_mismatch(
            self.model, shared, self.peft_config, first, adapter_name
        )
        if reason:
            self._undo_injection(self.model, adapter_name)
            del self.peft_config[adapter_name]
            raise ValueError(reason)
        # The sources' dtype: fp32 unless they all hold theta in the base dtype
        # (autocast_adapter_dtype=False).
        dtype = shared.theta[first].dtype
        for a in adapters:
            dtype = torch.promote_types(dtype, shared.theta[a].dtype)
        shared.theta[adapter_name] = nn.Parameter(
            combined.to(dtype=dtype, device=shared.theta[first].device), requires_grad=False
        )
        for wrapper_name, owner in owners.items():
            copies = self.model.get_submodule(wrapper_name).modules_to_save
            copies[adapter_name].load_state_dict(copies[owner].state_dict())
            copies[adapter_name].requires_grad_(False)

    # ------------------------------------------------------------------ state dict
    @classmethod
    def _get_adapter_state_dict(
        cls, model, config, adapter_name, state_dict, unwanted_adapter_names
    ):
        key = next((k for k in state_dict if k.endswith(f"{THETA}.{adapter_name}")), None)
        if key is None:
            raise KeyError(f"GPart adapter {adapter_name!r} has no theta in the model state dict.")
        to_return = {key: state_dict[key]}
        if getattr(config, "bias", "none") == "all":
            # Only what bias='all' trains directly: not the adapted layers' biases (theta
            # holds their update) nor the head's (saved by peft as modules_to_save). Under
            # FSDP the module names carry `_fsdp_wrapped_module.` and the state dict does not;
            # removed as torch's FSDP does it (`clean_tensor_name`) and peft's bias code.
            names = [n.replace(FSDP_PREFIX, "") for n in direct_bias_names(model)]
            to_return.update({k: state_dict[k] for k in names if k in state_dict})
        return to_return

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        """Checkpoint keys -> model keys, after two checks peft does not make for GPart:
        `theta` is there (peft would only warn about a missing key and leave theta at zero,
        i.e. load the base model), under the reference's key ``gpart_theta_d`` or this
        project's earlier ``gpart_theta``, and it has `d` entries."""
        found = [k for k in state_dict if k.rsplit(".", 1)[-1] in (THETA, LEGACY_THETA)]
        if len(found) != 1:
            raise ValueError(
                f"GPart adapter {adapter_name!r}: the checkpoint must hold theta once, as "
                f"'base_model.{THETA}' (or the older 'base_model.{LEGACY_THETA}'); it has "
                f"{found or 'none'} among its keys {sorted(state_dict)[:8]}. Is this a GPart "
                "adapter file?"
            )
        key = found[0]
        theta = state_dict.pop(key)
        if theta.ndim != 1 or theta.numel() != config.d:
            raise ValueError(
                f"GPart adapter {adapter_name!r}: theta in the checkpoint has shape "
                f"{tuple(theta.shape)}, its config says d={config.d}."
            )
        state_dict[key.rsplit(".", 1)[0] + "." + THETA] = theta
        return super()._remap_adapter_state_dict_for_load(
            model=model, config=config, adapter_name=adapter_name, state_dict=state_dict
        )
