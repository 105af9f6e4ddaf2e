"""`transformers.Trainer` with parameter groups for adapter vs. head, and exact warmup.

Everything else (AMP, accumulation, clipping, checkpoints, resume, DDP/FSDP through
``accelerate launch``, best-model selection, early stopping, TensorBoard) is the stock
`Trainer`: this module only decides *which learning rate and weight decay each trainable
parameter gets* and *how many warmup steps the schedule has*.

Parameter groups (only ``requires_grad`` parameters; empty groups are dropped):

* **head**: parameters under a module named like one of ``head_modules`` (``classifier`` by
  default, which also matches peft's ``classifier.modules_to_save.default...``), at
  ``head_lr`` with ``head_weight_decay``.
* **adapter**: every other trainable parameter (GPart's ``theta``, LoRA matrices, BitFit
  biases, or the whole backbone for full fine-tuning), at ``lr`` with ``weight_decay``.
* Biases and normalisation weights (LayerNorm/RMSNorm/GroupNorm modules, or the name
  patterns `Trainer` itself uses: ``bias``, ``layernorm``, ``rmsnorm``, ``norm``) get no
  decay, as usual.
* GPart's ``theta`` (names containing ``gpart_theta``) is decayed like every other adapter
  tensor (LoRA's matrices, Uni-LoRA's vector), i.e. ``decay_theta=True``, the default here
  and of ``training.decay_theta``. Since ``||dW|| = ||theta||`` (isometric), decaying
  ``theta`` is exactly decaying the update towards the base weights;
  ``decay_theta=False`` exempts it.

Warmup: ``ceil(warmup_ratio * total_steps)`` computed on the exact number of optimizer steps
`Trainer` will take (:func:`count_training_steps` reproduces it), with a tolerance so float
noise (``0.07 * 100 = 7.000000000000001``) does not add a step, unlike
``TrainingArguments.get_warmup_steps``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import Trainer, get_scheduler

from gpart.heads import is_head_param

THETA_NAME = "gpart_theta"
DEFAULT_HEAD_MODULES: tuple[str, ...] = ("classifier",)
SCHEDULER_CHOICES = ("linear", "cosine", "constant_with_warmup")

# The name patterns `Trainer` itself exempts from decay (on the lower-cased name).
_NO_DECAY_NAME = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")


def _norm_parameter_names(model: nn.Module) -> set[str]:
    """Parameters owned by normalisation layers (matched by class, whatever their name)."""
    names = set()
    for mod_name, module in model.named_modules():
        cls = type(module).__name__
        if isinstance(module, nn.LayerNorm | nn.GroupNorm) or cls.endswith(
            ("LayerNorm", "RMSNorm")
        ):
            for p_name, _ in module.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def build_param_groups(
    model: nn.Module,
    *,
    lr: float,
    head_lr: float | None = None,
    weight_decay: float = 0.0,
    head_weight_decay: float | None = None,
    decay_theta: bool = True,
    head_modules: Sequence[str] = DEFAULT_HEAD_MODULES,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for the trainable parameters of ``model``.

    Args:
        lr: Learning rate of the adapter (every trainable non-head parameter).
        head_lr: Learning rate of the head; ``None`` = ``lr``.
        weight_decay: Decay of adapter weights.
        head_weight_decay: Decay of head weights; ``None`` = ``weight_decay``.
        decay_theta: Whether GPart's ``theta`` gets ``weight_decay`` (default: yes).
        head_modules: Module names that make up the head.

    Returns:
        Groups with keys ``params``, ``lr``, ``weight_decay`` and ``name`` (one of
        ``adapter``, ``adapter_no_decay``, ``head``, ``head_no_decay``); torch optimizers
        keep the extra ``name`` key, which makes the groups easy to log and test.

    Raises:
        ValueError: no trainable parameter at all.
    """
    head_lr = lr if head_lr is None else head_lr
    head_weight_decay = weight_decay if head_weight_decay is None else head_weight_decay
    norm_names = _norm_parameter_names(model)
    buckets: dict[str, list[nn.Parameter]] = {
        "adapter": [],
        "adapter_no_decay": [],
        "head": [],
        "head_no_decay": [],
    }
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:  # tied weights appear once
            continue
        seen.add(id(param))
        role = "head" if is_head_param(name, head_modules) else "adapter"
        if THETA_NAME in name:
            decay = decay_theta
        else:
            decay = name not in norm_names and not _NO_DECAY_NAME.search(name.lower())
        buckets[role if decay else f"{role}_no_decay"].append(param)
    if not seen:
        raise ValueError("the model has no trainable parameter (requires_grad=True)")
    settings = {
        "adapter": (lr, weight_decay),
        "adapter_no_decay": (lr, 0.0),
        "head": (head_lr, head_weight_decay),
        "head_no_decay": (head_lr, 0.0),
    }
    return [
        {"params": params, "lr": settings[key][0], "weight_decay": settings[key][1], "name": key}
        for key, params in buckets.items()
        if params
    ]


def count_training_steps(
    num_examples: int,
    per_device_batch_size: int,
    *,
    num_epochs: float = 1.0,
    gradient_accumulation_steps: int = 1,
    world_size: int = 1,
    max_steps: int = -1,
    drop_last: bool = False,
) -> int:
    """Optimizer steps `Trainer` takes: what the schedule must span.

    Per process, an epoch has ``ceil(n / world_size / batch)`` batches (``floor`` with
    ``drop_last``; the distributed sampler pads to equal shards) and
    ``ceil(batches / accumulation)`` optimizer steps (a trailing partial accumulation still
    steps); ``ceil(epochs * steps_per_epoch)`` in total unless ``max_steps > 0``.
    """
    if max_steps > 0:
        return max_steps
    if num_examples < 1 or per_device_batch_size < 1 or gradient_accumulation_steps < 1:
        raise ValueError("num_examples, batch size and accumulation steps must be >= 1")
    per_process = math.ceil(num_examples / world_size)
    batches = (
        per_process // per_device_batch_size
        if drop_last
        else math.ceil(per_process / per_device_batch_size)
    )
    steps_per_epoch = max(math.ceil(batches / gradient_accumulation_steps), 1)
    return math.ceil(num_epochs * steps_per_epoch)


def warmup_steps_from_ratio(total_steps: int, warmup_ratio: float) -> int:
    """``ceil(warmup_ratio * total_steps)``, robust to float noise."""
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    return min(math.ceil(warmup_ratio * total_steps - 1e-9), total_steps)


class GroupedTrainer(Trainer):
    """`Trainer` whose optimizer has adapter / head groups and whose warmup is a ratio.

    ``TrainingArguments.learning_rate`` and ``weight_decay`` apply to the adapter; the extra
    keyword arguments below configure the rest. The optimizer class and its other settings
    (betas, eps, fused, ...) still come from ``TrainingArguments.optim``.

    Args:
        head_lr: Head learning rate; ``None`` = ``args.learning_rate``.
        head_weight_decay: Head weight decay; ``None`` = ``args.weight_decay``.
        decay_theta: Decay GPart's ``theta`` (default on, see the module docstring).
        warmup_ratio: Warmup as a share of the exact total step count; ``None`` falls back
            to ``args.warmup_steps`` (`Trainer`'s own rule).
        head_modules: Module names that form the head.
    """

    def __init__(
        self,
        *args: Any,
        head_lr: float | None = None,
        head_weight_decay: float | None = None,
        decay_theta: bool = True,
        warmup_ratio: float | None = None,
        head_modules: Iterable[str] = DEFAULT_HEAD_MODULES,
        **kwargs: Any,
    ) -> None:
        if warmup_ratio is not None and not 0.0 <= warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
        self.head_lr = head_lr
        self.head_weight_decay = head_weight_decay
        self.decay_theta = decay_theta
        self.warmup_ratio = warmup_ratio
        self.head_modules = tuple(head_modules)
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = build_param_groups(
                opt_model,
                lr=self.args.learning_rate,
                head_lr=self.head_lr,
                weight_decay=self.args.weight_decay,
                head_weight_decay=self.head_weight_decay,
                decay_theta=self.decay_theta,
                head_modules=self.head_modules,
            )
            if self.optimizer_cls_and_kwargs is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                    self.args, opt_model
                )
            if any(k in optimizer_kwargs for k in ("params", "model", "optimizer_dict")):
                # GaLore / LOMO / layer-wise optimizers build their own groups.
                raise ValueError(
                    f"optim={self.args.optim!r} manages its own parameter groups; "
                    "GroupedTrainer supports standard optimizers (adamw_torch, sgd, ...)"
                )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def num_warmup_steps(self, num_training_steps: int) -> int:
        """Warmup steps for a schedule of ``num_training_steps`` optimizer steps."""
        if self.warmup_ratio is None:
            return self.args.get_warmup_steps(num_training_steps)
        return warmup_steps_from_ratio(num_training_steps, self.warmup_ratio)

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        if self.lr_scheduler is None:
            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type,
                optimizer=self.optimizer if optimizer is None else optimizer,
                num_warmup_steps=self.num_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler
