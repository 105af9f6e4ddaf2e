"""The methods the benchmark compares, each turned into a ready-to-step training setup.

Every setup shares the frozen base weights of one base model (no copy per method), except
full fine-tuning, whose optimizer step writes to its weights and so gets its own copy.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, UniLoraConfig, VeraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import save_file
from torch import nn

import gpart  # noqa: F401  (registers GPart with peft)
from gpart import GPartConfig
from gpart.bench.models import ModelSpec, output_module_names, target_modules

GPART_VARIANTS = {
    f"gpart-{assignment}-{grouping}": (assignment, grouping)
    for assignment in ("stateless", "materialized")
    for grouping in ("random", "balanced")
}
# The paper's ablations, each against its reference mode: per-block partition vs
# stateless random, sign/magnitude groups vs materialized random, and the dense Fastfood
# projection (the expensive baseline the partition is meant to beat). Opt-in
# (`--methods ablations`), so the default table stays what docs/performance.md reports.
ABLATIONS: dict[str, dict[str, str]] = {
    "gpart-block": {"partition_scope": "transformer_block"},
    "gpart-signed": {"assignment_backend": "materialized", "grouping_strategy": "signed_magnitude"},
    "gpart-fastfood": {"projection_type": "fastfood"},
}
# Methods that do not depend on the target set run once; the others once per target set.
UNTARGETED = ("full", "floor", "head")
TARGETED = ("lora", "unilora", "vera", *GPART_VARIANTS, *ABLATIONS)
METHODS = (*UNTARGETED, *TARGETED)
DEFAULT_METHODS = tuple(m for m in METHODS if m not in ABLATIONS)

DESCRIPTIONS = {
    "full": "full fine-tuning (AdamW step)",
    "floor": "full fine-tuning, forward+backward only (no optimizer step)",
    "head": "output head only",
    "lora": "LoRA (r=8 unless --lora_r)",
    "unilora": "Uni-LoRA (peft UniLoraConfig)",
    "vera": "VeRA r=256",
    **{name: f"GPart {a}/{g}" for name, (a, g) in GPART_VARIANTS.items()},
    "gpart-block": "GPart, one partition per transformer block",
    "gpart-signed": "GPart, groups by the pretrained weight's sign and magnitude",
    "gpart-fastfood": "dense Fastfood projection of theta (ablation baseline)",
}


@dataclass
class HyperParams:
    gpart_d: int = 23040
    lora_r: int = 8
    lora_alpha: int | None = None  # None: 2 * lora_r (the GLUE runs' convention)
    unilora_r: int = 4
    unilora_d: int = 23040
    vera_r: int = 256
    lr: float = 1e-4
    seed: int = 0
    # How AdamW steps (`OPTIMIZERS`): fused by default, the optimizer the runners train
    # with (Trainer's default `optim`, adamw_torch_fused).
    optimizer: str = "fused"


@dataclass
class Setup:
    """One method on one target set, ready for `step()`."""

    name: str
    target_set: str | None
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    adapted_weights: int
    save: Callable[[Path], list[Path]]  # writes the trained state, returns the files
    extra: dict = field(default_factory=dict)
    # What a step calls: the model, or it compiled whole (`compile`).
    forward: Callable[..., object] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.name if self.target_set is None else f"{self.name} [{self.target_set}]"

    def compile(self) -> None:
        """Run the model compiled whole (`torch.compile`, default mode) from the next step
        on, as Trainer's ``torch_compile`` does; the first step pays the compilation."""
        self.forward = torch.compile(self.model)

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        model = self.model if self.forward is None else self.forward
        loss = model(**batch).loss
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        self.model.zero_grad(set_to_none=True)
        return float(loss.detach())


def share_frozen_weights(base: nn.Module) -> nn.Module:
    """A copy of `base` whose parameters are new Parameter objects on the same storage.

    requires_grad is per Parameter object, so each method can freeze/unfreeze its own view
    while the weights themselves exist once in memory. Tied weights stay tied.

    Quantized layers (bitsandbytes' `Linear4bit` / `Linear8bitLt`, whose weight is a
    Parameter subclass carrying its quantization state: `quant_state`, int8 scales that
    the first forward moves into the layer's `state`) are shared whole, module and all: a
    plain Parameter on their packed data would lose that state, and a quantized weight is
    never trained, so no view needs its own `requires_grad`.
    """
    memo: dict[int, object] = {}
    for m in base.modules():
        if is_quantized_layer(m):
            memo[id(m)] = m
            memo.update({id(p): p for p in m.parameters()})
    for p in base.parameters():
        if id(p) not in memo:
            memo[id(p)] = nn.Parameter(p.data, requires_grad=p.requires_grad)
    return copy.deepcopy(base, memo)


def is_quantized_layer(module: nn.Module) -> bool:
    """A layer whose weight is stored quantized (a Parameter subclass, as bitsandbytes'
    `Params4bit` / `Int8Params`), told apart without importing bitsandbytes."""
    weight = getattr(module, "weight", None)
    return isinstance(weight, nn.Parameter) and type(weight) is not nn.Parameter


def weight_entries(layer: nn.Module) -> int:
    """Entries of a layer's weight matrix: the unpacked shape for a 4-bit weight, whose
    storage packs two entries a byte (`quant_state.shape` is the original shape)."""
    weight = layer.weight
    state = getattr(weight, "quant_state", None)
    shape = getattr(state, "shape", None)
    return int(torch.Size(shape).numel()) if shape is not None else weight.numel()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


# AdamW's implementations (torch.optim.AdamW's `fused` / `foreach` switches): one kernel
# for all tensors, one op per step for all tensors, or one loop of ops per tensor (torch's
# choice on a CPU when neither is asked for). Per tensor, a method's optimizer step costs
# about ten small ops per trainable tensor: LoRA has two per adapted layer, GPart one in
# all, so on small layers the choice moves LoRA's step and hardly GPart's.
OPTIMIZERS = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "per_tensor": {"foreach": False},
}


def _adamw(params: list[nn.Parameter], hp: HyperParams) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=hp.lr, **OPTIMIZERS[hp.optimizer])


def _save_state_dict(model: nn.Module, names: list[str]) -> Callable[[Path], list[Path]]:
    def save(directory: Path) -> list[Path]:
        state = {
            f"{n}.{k}": v.detach().contiguous().cpu()
            for n in names
            for k, v in getattr(model, n).state_dict().items()
        }
        path = directory / "head.safetensors"
        save_file(state, str(path))
        return [path]

    return save


def _save_pretrained(model: nn.Module, pattern: str) -> Callable[[Path], list[Path]]:
    def save(directory: Path) -> list[Path]:
        model.save_pretrained(str(directory))
        return sorted(directory.glob(pattern))

    return save


def _peft_config(name: str, spec: ModelSpec, targets: list[str], hp: HyperParams):
    common = dict(target_modules=targets, task_type=spec.peft_task_type)
    if name == "lora":
        alpha = 2 * hp.lora_r if hp.lora_alpha is None else hp.lora_alpha
        return LoraConfig(r=hp.lora_r, lora_alpha=alpha, **common)
    if name == "unilora":
        return UniLoraConfig(
            r=hp.unilora_r, theta_d_length=hp.unilora_d, proj_seed=hp.seed, **common
        )
    if name == "vera":
        return VeraConfig(r=hp.vera_r, projection_prng_key=hp.seed, **common)
    if name in ABLATIONS:
        return GPartConfig(d=hp.gpart_d, proj_seed=hp.seed, **ABLATIONS[name], **common)
    assignment, grouping = GPART_VARIANTS[name]
    return GPartConfig(
        d=hp.gpart_d,
        assignment_backend=assignment,
        grouping_strategy=grouping,
        proj_seed=hp.seed,
        **common,
    )


def build_setup(
    name: str,
    target_set: str | None,
    base: nn.Module,
    spec: ModelSpec,
    hp: HyperParams,
    torch_compile: bool = False,
) -> Setup:
    """Wrap (a weight-sharing view of) `base` for method `name`; `torch_compile`: its steps
    run the model compiled whole (`Setup.compile`)."""
    setup = _build_setup(name, target_set, base, spec, hp)
    if torch_compile:
        setup.compile()
    return setup


def _build_setup(
    name: str, target_set: str | None, base: nn.Module, spec: ModelSpec, hp: HyperParams
) -> Setup:
    """The setup of `build_setup`, uncompiled."""
    if name in ("full", "floor", "head"):
        if name == "head":
            model = share_frozen_weights(base)
            model.requires_grad_(False)
            heads = output_module_names(model, spec)
            for h in heads:  # the head is trained: its own copy of the weights
                setattr(model, h, copy.deepcopy(getattr(base, h)).requires_grad_(True))
            save = _save_state_dict(model, heads)
        else:
            # full trains every weight in place: its own copy. The floor never steps: shared.
            model = copy.deepcopy(base) if name == "full" else share_frozen_weights(base)
            model.requires_grad_(True)
            save = _save_pretrained(model, "*.safetensors")
        model.train()
        params = trainable_parameters(model)
        return Setup(
            name,
            None,
            model,
            None if name == "floor" else _adamw(params, hp),
            adapted_weights=sum(p.numel() for p in params),
            save=save,
        )
    assert target_set is not None
    view = share_frozen_weights(base)
    targets = target_modules(view, spec, target_set)
    model: PeftModel = get_peft_model(view, _peft_config(name, spec, targets, hp))
    model.train()
    adapted = sum(
        weight_entries(m.get_base_layer()) for m in model.modules() if isinstance(m, BaseTunerLayer)
    )
    return Setup(
        name,
        target_set,
        model,
        _adamw(trainable_parameters(model), hp),
        adapted_weights=adapted,
        save=_save_pretrained(model, "adapter_model.safetensors"),
        extra={"adapted_modules": len(targets)},
    )


def adapter_state_bytes(setup: Setup, base: nn.Module) -> tuple[int, int]:
    """(all adapter buffers, the per-layer ones) in bytes: memory that is not a trained
    parameter and not the base model, kept between steps (indices, scales, projections).

    A buffer held by exactly one adapted layer is per-layer state (it grows with the adapted
    weights); one held by the tuner or shared by many layers is model-level state.
    """
    model = setup.model
    if not isinstance(model, PeftModel):
        return 0, 0
    base_buffers = {n for n, _ in base.named_buffers()}

    def is_base(name: str) -> bool:
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        return key in base_buffers or ".original_module." in name

    owners: dict[int, set[int]] = {}
    sizes: dict[int, int] = {}
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for n, b in module.named_buffers():
                if not n.startswith("base_layer"):
                    owners.setdefault(b.data_ptr(), set()).add(id(module))
    total = local = 0
    for n, b in model.named_buffers():
        ptr = b.data_ptr()
        if is_base(n) or ptr in sizes or b.numel() == 0:
            continue
        sizes[ptr] = b.numel() * b.element_size()
        total += sizes[ptr]
        if len(owners.get(ptr, ())) == 1:
            local += sizes[ptr]
    return total, local


def saved_bytes(setup: Setup) -> int:
    """Size of the file(s) the method saves after training (its adapter, head or model)."""
    with tempfile.TemporaryDirectory(prefix="gpart-bench-") as tmp:
        files = setup.save(Path(tmp))
        return sum(os.path.getsize(f) for f in files)
