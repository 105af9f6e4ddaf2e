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
* ``decay_vectors=False`` exempts every other 1-D tensor too (VeRA's scaling vectors,
  Uni-LoRA's ``theta_d``), as the GLUE reference splits its groups by ``ndim``.
* GPart's ``theta`` (names containing ``gpart_theta``) is decayed like every other adapter
  tensor (LoRA's matrices, Uni-LoRA's vector), i.e. ``decay_theta=True``, the default here
  and of ``training.decay_theta``. Since ``||dW|| = ||theta||`` (isometric), decaying
  ``theta`` is exactly decaying the update towards the base weights;
  ``decay_theta=False`` exempts it.

Schedule length (``schedule_steps``):

* ``"exact"``: the schedule spans the optimizer steps `Trainer` takes
  (:func:`count_training_steps` reproduces the count) and warms up for
  ``ceil(warmup_ratio * total_steps)`` steps, with a tolerance so float noise
  (``0.07 * 100 = 7.000000000000001``) does not add a step, unlike
  ``TrainingArguments.get_warmup_steps``.
* ``"reference"``: the paper authors' arithmetic (SamsungLabs/GPart at 320f0c1,
  ``utils/training_config.py::get_total_steps`` / ``get_warmup_steps``):
  ``int(n / batch * epochs)`` steps and ``int(total * warmup_ratio)`` warmup steps, both
  truncated as written there. With a partial last batch the schedule reaches zero before
  the last steps, which then train at learning rate 0, as theirs do.
* ``"exact_floor"``: the steps `Trainer` takes, as ``"exact"``, warming up for
  ``int(total_steps * warmup_ratio)`` (truncated): the vision reference's
  ``create_scheduler`` (``finetune_ViT.py``), which runs on `Trainer`'s own count.

Data order (``data_order``):

* ``"seeded"``: `Trainer`'s own, accelerate's seedable sampler (``data_seed + epoch``):
  independent of everything else the run draws, the same under DDP.
* ``"reference"``: `ReferenceOrderSampler`, the order of the reference's
  ``DataLoader(shuffle=True)``: each epoch's permutation is seeded by a draw from the global
  torch RNG, so it depends on what ran before it (the head's initialisation, dropout). One
  process only. Resumable: the epoch's seed is saved with each checkpoint
  (`DATA_ORDER_FILE`), so a run resumed mid-epoch sees the rest of the same permutation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import RandomSampler
from transformers import Trainer, TrainerCallback, get_scheduler

from gpart.heads import is_head_param

THETA_NAME = "gpart_theta"
DEFAULT_HEAD_MODULES: tuple[str, ...] = ("classifier",)
SCHEDULER_CHOICES = ("linear", "cosine", "constant_with_warmup")
SCHEDULE_STEPS_CHOICES = ("exact", "reference", "exact_floor")
DATA_ORDER_CHOICES = ("seeded", "reference")
# Saved in each checkpoint under data_order "reference": the seed of the epoch in progress.
DATA_ORDER_FILE = "data_order.json"

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
    decay_biases_and_norms: bool = False,
    decay_vectors: bool = True,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for the trainable parameters of ``model``.

    Args:
        lr: Learning rate of the adapter (every trainable non-head parameter).
        head_lr: Learning rate of the head; ``None`` = ``lr``.
        weight_decay: Decay of adapter weights.
        head_weight_decay: Decay of head weights; ``None`` = ``weight_decay``.
        decay_theta: Whether GPart's ``theta`` gets ``weight_decay`` (default: yes).
        head_modules: Module names that make up the head.
        decay_biases_and_norms: Decay biases and normalisation weights too (default: they
            get none, as stock Trainer grouping).
        decay_vectors: Decay the other 1-D tensors (default: yes); False exempts every
            1-D tensor but GPart's ``theta``, as the GLUE reference does.

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
        elif decay_biases_and_norms:
            decay = True
        else:
            decay = name not in norm_names and not _NO_DECAY_NAME.search(name.lower())
            decay = decay and (decay_vectors or param.ndim != 1)
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


def reference_total_steps(num_examples: int, batch_size: int, num_epochs: float) -> int:
    """The schedule's length as the reference computes it: ``int(n / batch * epochs)``, the
    same float expression, so the same truncation (its warmup is ``int(total * ratio)``).

    ``batch_size`` is the examples per optimizer step (per-device batch x accumulation x
    processes; the reference has none of the last two).
    """
    return int((num_examples / batch_size) * num_epochs)


class ReferenceOrderSampler(RandomSampler):
    """`RandomSampler` whose every epoch is seeded by one draw from the global torch RNG.

    The same draw, at the same moment (the first index of the epoch), and the same
    permutation as a `RandomSampler` without a generator, which is what
    ``DataLoader(shuffle=True)`` uses; the epoch's seed is kept (`epoch_seed`) so that a
    checkpoint can save it and a resumed run can replay the epoch (`resume_seed`).
    """

    def __init__(self, data_source: Any) -> None:
        super().__init__(data_source)
        self.epoch_seed: int | None = None
        self.resume_seed: int | None = None

    def __iter__(self) -> Iterator[int]:
        if self.resume_seed is not None:
            seed, self.resume_seed = self.resume_seed, None
        else:
            # torch.utils.data.RandomSampler.__iter__'s own draw when it has no generator
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
        self.epoch_seed = seed
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        yield from super().__iter__()


class _SaveEpochSeed(TrainerCallback):
    """Writes the reference sampler's current epoch seed into each checkpoint."""

    def __init__(self, trainer: GroupedTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sampler = self.trainer._reference_sampler
        if sampler is None or not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            (ckpt / DATA_ORDER_FILE).write_text(json.dumps({"epoch_seed": sampler.epoch_seed}))


class GroupedTrainer(Trainer):
    """`Trainer` whose optimizer has adapter / head groups and whose warmup is a ratio.

    ``TrainingArguments.learning_rate`` and ``weight_decay`` apply to the adapter; the extra
    keyword arguments below configure the rest. The optimizer class and its other settings
    (betas, eps, fused, ...) still come from ``TrainingArguments.optim``.

    Args:
        head_lr: Head learning rate; ``None`` = ``args.learning_rate``.
        head_weight_decay: Head weight decay; ``None`` = ``args.weight_decay``.
        decay_theta: Decay GPart's ``theta`` (default on, see the module docstring).
        warmup_ratio: Warmup as a share of the total step count; ``None`` falls back
            to ``args.warmup_steps`` (`Trainer`'s own rule).
        head_modules: Module names that form the head.
        schedule_steps: ``"exact"``, ``"reference"`` or ``"exact_floor"`` (the module
            docstring).
        decay_biases_and_norms: Decay biases and norms too (`build_param_groups`).
        decay_vectors: Decay the other 1-D tensors (`build_param_groups`).
        data_order: ``"seeded"`` or ``"reference"`` (the module docstring); ``"reference"``
            needs ``accelerator_config={"use_seedable_sampler": False}`` in ``args``, or
            accelerate would replace the sampler by its seedable one.
    """

    def __init__(
        self,
        *args: Any,
        head_lr: float | None = None,
        head_weight_decay: float | None = None,
        decay_theta: bool = True,
        warmup_ratio: float | None = None,
        head_modules: Iterable[str] = DEFAULT_HEAD_MODULES,
        schedule_steps: str = "exact",
        data_order: str = "seeded",
        decay_biases_and_norms: bool = False,
        decay_vectors: bool = True,
        **kwargs: Any,
    ) -> None:
        if warmup_ratio is not None and not 0.0 <= warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
        if schedule_steps not in SCHEDULE_STEPS_CHOICES:
            raise ValueError(f"schedule_steps must be one of {SCHEDULE_STEPS_CHOICES}")
        if data_order not in DATA_ORDER_CHOICES:
            raise ValueError(f"data_order must be one of {DATA_ORDER_CHOICES}")
        self.decay_biases_and_norms = decay_biases_and_norms
        self.decay_vectors = decay_vectors
        self.head_lr = head_lr
        self.head_weight_decay = head_weight_decay
        self.decay_theta = decay_theta
        self.warmup_ratio = warmup_ratio
        self.head_modules = tuple(head_modules)
        self.schedule_steps = schedule_steps
        self.data_order = data_order
        self._reference_sampler: ReferenceOrderSampler | None = None
        self._resume_seed: int | None = None
        super().__init__(*args, **kwargs)
        if data_order == "reference":
            if self.args.world_size > 1:
                raise ValueError(
                    "data_order 'reference' draws the order from each process's global RNG: "
                    "one process only; use 'seeded' under accelerate launch / torchrun"
                )
            if self.args.accelerator_config.use_seedable_sampler:
                raise ValueError(
                    "data_order 'reference' needs TrainingArguments(accelerator_config="
                    "{'use_seedable_sampler': False}): accelerate would replace its sampler"
                )
            self.add_callback(_SaveEpochSeed(self))

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """`Trainer.train`; under data_order "reference", a checkpoint taken mid-epoch
        hands the epoch's seed to the sampler so the resumed epoch keeps its permutation
        (`Trainer` restores the global RNG only after the new epoch has drawn its seed)."""
        self._resume_seed = None
        if self.data_order == "reference" and isinstance(resume_from_checkpoint, str):
            ckpt = Path(resume_from_checkpoint)
            state = json.loads((ckpt / "trainer_state.json").read_text())
            epoch = float(state.get("epoch") or 0.0)
            if epoch != math.floor(epoch):  # mid-epoch; at a boundary the next epoch draws
                saved = ckpt / DATA_ORDER_FILE
                if not saved.exists():
                    raise ValueError(
                        f"{ckpt}: a mid-epoch checkpoint without {DATA_ORDER_FILE}; it was not "
                        "written with data_order 'reference', so its epoch cannot be replayed"
                    )
                self._resume_seed = int(json.loads(saved.read_text())["epoch_seed"])
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.data_order != "reference":
            return super()._get_train_sampler(train_dataset)
        dataset = self.train_dataset if train_dataset is None else train_dataset
        sampler = ReferenceOrderSampler(dataset)
        sampler.resume_seed, self._resume_seed = self._resume_seed, None
        self._reference_sampler = sampler
        return sampler

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
                decay_biases_and_norms=self.decay_biases_and_norms,
                decay_vectors=self.decay_vectors,
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
        if self.schedule_steps in ("reference", "exact_floor"):
            return int(num_training_steps * self.warmup_ratio)
        return warmup_steps_from_ratio(num_training_steps, self.warmup_ratio)

    def _reference_total_steps(self) -> int:
        """The schedule's length under schedule_steps "reference" (``max_steps`` wins)."""
        if self.args.max_steps > 0:
            return self.args.max_steps
        per_step = (
            self.args.per_device_train_batch_size
            * self.args.gradient_accumulation_steps
            * max(1, self.args.world_size)
        )
        return reference_total_steps(len(self.train_dataset), per_step, self.args.num_train_epochs)

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        if self.lr_scheduler is None:
            if self.schedule_steps == "reference":
                num_training_steps = self._reference_total_steps()
            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type,
                optimizer=self.optimizer if optimizer is None else optimizer,
                num_warmup_steps=self.num_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler
