"""The experiment schema: plain dataclasses shared by the GLUE, vision and math runners.

An `ExperimentConfig` composes

- `ModelConfig`      which pretrained model (hub id or local path) and its size preset,
- `AdapterConfig`    one subclass per adapter (`gpart`, `lora`, ...; see `configs/adapters/`),
- `TrainingConfig`   optimisation and evaluation schedule,
- `DataConfig`       where data comes from and how it is cut down for smoke runs,
- `TaskConfig`       overrides of training fields: ``task`` for every task of the run,
                     ``per_task[name]`` for one task; ``None`` means "inherit".

Every field is reachable from the command line as ``section.field value`` (see
`gpart.configs.cli`); its annotation decides how the value is parsed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Literal

from gpart.configs.errors import ConfigError

# Field metadata flag: a value of None is replaced by the run's seed during resolution, so
# the random projection/partition varies with --seed exactly like the data order does.
FOLLOWS_SEED = "follows_seed"

# Field metadata flag: a field added after run names were in use. Left at its default it
# stays out of the run identity (`gpart.runners.identity`), so existing run directories
# keep their names; set to anything else, it enters the identity like every other field.
IDENTITY_IF_CHANGED = "identity_if_changed"

# Field metadata flag: a field that says where a run is reported, not what it computes
# (experiment trackers, the name they show). It never enters the run identity, so logging
# a finished sweep to another tracker does not rename it.
NOT_IDENTITY = "not_identity"


@dataclass
class TrainingConfig:
    """Optimisation and evaluation schedule.

    Defaults follow the GPart paper's GLUE protocol; the GLUE presets
    (`gpart.configs.presets.glue`) restate the shared protocol and set each method's values.
    """

    batch_size: int = 32
    # None: same as batch_size.
    eval_batch_size: int | None = None
    max_seq_length: int = 512
    epochs: int = 10
    # When set, wins over `epochs` (step-budgeted runs such as MetaMathQA).
    max_steps: int | None = None
    # Learning rate of the adapter's trainable parameters (all weights for `full`).
    lr: float = 1e-3
    # Learning rate of the task head; None: same as `lr`.
    head_lr: float | None = 1e-3
    weight_decay: float = 0.1
    # Weight decay of the head; None: same as `weight_decay`.
    head_weight_decay: float | None = None
    # Decay biases and normalisation weights too. false: they get no weight decay, as stock
    # Trainer grouping does. true: every tensor decays, the head's bias too, as the vision
    # reference's optimizer does (finetune_ViT.py:460-484).
    decay_biases_and_norms: bool = field(default=False, metadata={IDENTITY_IF_CHANGED: True})
    # Decay GPart's theta with `weight_decay` (AdamW, decoupled). On by default: the paper's
    # "weight decay 0.1" applies to every trainable tensor except biases and norms, as stock
    # Trainer grouping does (LoRA's B, Uni-LoRA's theta_d are decayed the same way). Since
    # ||dW|| = ||theta||, decaying theta is exactly decaying the update towards the base
    # model; `training.decay_theta false` turns it off.
    decay_theta: bool = True
    # Decay 1-D tensors that are neither biases nor norm weights (VeRA's scaling vectors,
    # Uni-LoRA's theta_d). false: no 1-D tensor decays, as the GLUE reference's optimizer
    # splits them (utils/adapter_utils.py:256-278, by ndim); GPart's theta still follows
    # decay_theta, and decay_biases_and_norms true decays everything.
    decay_vectors: bool = field(default=True, metadata={IDENTITY_IF_CHANGED: True})
    warmup_ratio: float = 0.06
    scheduler: Literal["linear", "cosine"] = "linear"
    grad_accum: int = 1
    # None: no clipping.
    max_grad_norm: float | None = 1.0
    # "auto": fp16 on a CUDA device, fp32 on the CPU (the ViT recipes' fp16, runnable anywhere).
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    # "best": reload the checkpoint with the best primary metric at the end.
    model_selection: Literal["best", "last"] = "best"
    # None: off. Otherwise the number of evaluations without improvement before stopping.
    early_stopping_patience: int | None = None
    # None: evaluate once per epoch; N: every N optimizer steps.
    eval_every: int | None = None
    logging_steps: int = 50
    save_total_limit: int | None = 1
    num_workers: int = 2
    gradient_checkpointing: bool = False
    # Trainer's own `torch_compile`: the model compiled whole by `torch.compile` (GPart's
    # layers are opaque custom ops in its graph). Pays on long runs of a fixed shape; each
    # new batch shape recompiles (docs/performance.md, "Compiling the model").
    torch_compile: bool = field(default=False, metadata={IDENTITY_IF_CHANGED: True})
    # Trainer's `full_determinism`: deterministic kernels (torch.use_deterministic_algorithms,
    # cuDNN's deterministic mode, CUBLAS_WORKSPACE_CONFIG) so that one command gives one run on
    # a GPU too; slower there, and an operation without a deterministic kernel raises instead
    # of running. A CPU run repeats exactly without it.
    deterministic: bool = field(default=False, metadata={IDENTITY_IF_CHANGED: True})
    # Used by image classification (ViT recipes); 0 leaves the loss unchanged elsewhere.
    label_smoothing: float = 0.0
    # How long the learning-rate schedule is (gpart.training.trainer). "exact": the
    # optimizer steps Trainer takes, warmup ceil(warmup_ratio * steps). "reference": the
    # paper authors' int(n / batch * epochs) and int(steps * warmup_ratio), truncated as
    # their utils/training_config.py does (the GLUE presets, to run their experiment).
    # "exact_floor": the optimizer steps Trainer takes, warmup int(warmup_ratio * steps),
    # as the vision reference's create_scheduler computes it (finetune_ViT.py:487-494).
    schedule_steps: Literal["exact", "reference", "exact_floor"] = field(
        default="exact", metadata={IDENTITY_IF_CHANGED: True}
    )
    # The order of training examples. "seeded": Trainer's own (accelerate's seedable
    # sampler, data_seed + epoch: the same whatever else the run draws, and under DDP).
    # "reference": the paper authors' DataLoader(shuffle=True), each epoch seeded by a draw
    # from the global torch RNG as model set-up and training left it; one process only.
    data_order: Literal["seeded", "reference"] = field(
        default="seeded", metadata={IDENTITY_IF_CHANGED: True}
    )
    # The global RNGs (Python, numpy, torch) when training starts. false: as the set-up
    # (set_seed, model, head, adapter) left them, as the GLUE reference's own loop goes on.
    # true: restarted from the run seed when the Trainer is built, which transformers'
    # Trainer does by itself; the vision and math references train with it
    # (finetune_ViT.py:497-539, finetune_metamath.py:379), so their training draws
    # (augmentation, dropout) start from set_seed(seed).
    reseed_trainer: bool = field(default=False, metadata={IDENTITY_IF_CHANGED: True})
    # Experiment trackers, as transformers' `TrainingArguments.report_to` takes them:
    # tensorboard (the default, into the run directory's runs/), mlflow, wandb, trackio, any
    # other integration transformers has, "all" (every one installed) or "none". mlflow,
    # wandb and trackio are extras (`uv sync --extra mlflow`); each is configured by its own
    # environment (MLFLOW_TRACKING_URI, WANDB_MODE=offline, ...). `gpart.runners.tracking`.
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={NOT_IDENTITY: True}
    )
    # The name the trackers show; the task and seed are appended (one tracker run per run
    # directory). None: the sweep's run name, so a tracker run reads like its directory.
    run_name: str | None = field(default=None, metadata={NOT_IDENTITY: True})


def _overrides_of(cls: type, name: str, doc: str) -> type:
    """A dataclass with every field of dataclass `cls`, each optional and None by default.

    Args:
        cls: the dataclass whose fields are overridden.
        name: the new class's name; the caller binds it to the same name in this module,
            so the class pickles and reprs like one written out by hand.
        doc: the new class's docstring.

    Returns:
        The new dataclass: field for field as `cls`, in the same order, each annotated
        ``<its type> | None`` (resolved, so `field_types` and the command-line coercion
        read it like any other annotation) with default None.
    """
    hints = typing.get_type_hints(cls)
    return dataclasses.make_dataclass(
        name,
        [(f.name, hints[f.name] | None, field(default=None)) for f in dataclasses.fields(cls)],
        namespace={"__module__": __name__, "__qualname__": name, "__doc__": doc},
    )


TaskConfig = _overrides_of(
    TrainingConfig,
    "TaskConfig",
    """Per-task overrides of `TrainingConfig`; every field None ("inherit") by default.

    Generated from `TrainingConfig` (same fields, each ``<type> | None``), so anything that
    can be set for the run can also be set for one task: ``task.rte.epochs 160``.
    """,
)


@dataclass
class ModelConfig:
    """The pretrained model: a hub id or a local directory (offline)."""

    # None until a model-size preset or `model.base_model` / `--base_model` fills it.
    base_model: str | None = None
    # Picks the adapter/task/size presets; chosen with --model_size, not as an override,
    # because it decides which presets apply.
    model_size: str = "base"
    # The frozen base in bitsandbytes' 4-bit (nf4, fp4; double quantization, computing in
    # the run's training.precision) or 8-bit (int8) storage, as QLoRA trains (peft
    # adapters only; `gpart.runners.quantization`). Needs the `quant` extra (`uv sync
    # --extra quant`). "none": the base in floating point.
    quantization: Literal["none", "nf4", "fp4", "int8"] = field(
        default="none", metadata={IDENTITY_IF_CHANGED: True}
    )


@dataclass
class DataConfig:
    # Local directory with the datasets (offline); None: the hub source of the task.
    data_dir: str | None = None
    # Cut the splits down for smoke runs; None: all rows.
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    # How the model-selection split is carved out of train (gpart.data.glue,
    # gpart.data.vision). "balanced", GLUE: 20 % (at least 300), stratified by largest
    # remainder, members sorted in the dataset's order; vision: the last 10 % of a seeded
    # permutation, DTD's pooled images cut 72/8/20. "reference": the paper authors' rule and library call,
    # datasets' train_test_split(test_size=min(max(0.15, 300 / n), 0.2), seed,
    # stratify_by_column="label") (their utils/data_loader_utils.py::split_train_val);
    # vision: datasets' train_test_split(test_size=0.1, seed), DTD shuffle(seed) then
    # 0.28 / 0.715 splits (their finetune_ViT.py:145-226).
    selection_split: Literal["balanced", "reference"] = field(
        default="balanced", metadata={IDENTITY_IF_CHANGED: True}
    )
    # Vision: side of the square input images.
    image_size: int = 224
    # Vision: train-time RandomResizedCrop + horizontal flip; false: the eval transform.
    augment: bool = field(default=True, metadata={IDENTITY_IF_CHANGED: True})
    # Math: a local MetaMathQA-shaped file (json / jsonl / parquet with query, response);
    # None: <data_dir>/metamathqa/train.*, else the hub. A location, like data_dir: not
    # part of the run name (the data's fingerprint is recorded and checked instead).
    train_file: str | None = None
    # Math: which rows max_train_samples keeps. "first": the first N rows, Uni-LoRA's 100K
    # protocol (MetaMathQA's order); "seeded": a sample drawn with the run's seed.
    subset: Literal["first", "seeded"] = field(
        default="first", metadata={IDENTITY_IF_CHANGED: True}
    )
    # Math: rows held out at the end of the data; the run reports the loss on them (the
    # score comes from generation on GSM8K / MATH, a separate evaluation). 0: none, every
    # row trains (as the GPart authors train) and the run reports no loss of its own.
    heldout_samples: int = field(default=1000, metadata={IDENTITY_IF_CHANGED: True})
    # Math: how a (query, response) pair becomes text; see gpart.data.math.TEMPLATES.
    # "alpaca" is the prompt MetaMath and Uni-LoRA train with; "question_answer" the GPart
    # authors' text and token layout (gpart.data.math.encode_question_answer).
    prompt_template: Literal["plain", "alpaca", "chat", "question_answer"] = field(
        default="alpaca", metadata={IDENTITY_IF_CHANGED: True}
    )
    # Math: text before the prompt ("plain", "alpaca", "question_answer") or a system turn
    # ("chat"), followed by a blank line; None: none.
    system_prompt: str | None = field(default=None, metadata={IDENTITY_IF_CHANGED: True})
    # Math: false puts the loss on the response only (the prompt's labels are -100), as
    # instruction tuning usually does; true supervises the prompt tokens too (with
    # "question_answer": the question and answer, never the BOS or the system prompt).
    train_on_prompt: bool = field(default=False, metadata={IDENTITY_IF_CHANGED: True})
    # Math: batches of examples of similar length (transformers' group_by_length: less
    # padding, faster), drawn from the global torch RNG; false: Trainer's shuffled order
    # (training.data_order), as the GPart authors' Trainer draws it.
    group_by_length: bool = field(default=True, metadata={IDENTITY_IF_CHANGED: True})
    # Math: examples longer than training.max_seq_length are cut to their last tokens
    # ("truncate", keeps the response) or left out ("drop"); the count is reported.
    length_policy: Literal["truncate", "drop"] = field(
        default="truncate", metadata={IDENTITY_IF_CHANGED: True}
    )


@dataclass
class AdapterConfig:
    """Base of every adapter's config. Subclasses live in `gpart.configs.adapters`.

    `type` is the registry name; it is fixed by the subclass and chosen with
    ``--adapter_type``. `target_modules` None means "the adapter's default for the model".
    A peft method's section is derived from its peft config class (`adapter_section`),
    named in `peft_config`; the other methods (bitfit, head, full) have none.
    """

    type: str = ""
    target_modules: list[str] | None = None
    # (Any: `type` here would name the field above.)
    peft_config: ClassVar[Any] = None

    def validate(self) -> None:
        """Raise `ConfigError` for values the adapter cannot run with that peft's config
        class does not check itself (it checks the rest when it is built).

        Here: what several peft methods check only when their layers are built (a rank, a
        dropout probability, `bias`), by the field names they share, so that a bad value stops
        ``--print_config`` and a sweep before any data or model loads. Subclasses extend.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "r" and not (isinstance(value, int) and value > 0):
                raise ConfigError(f"adapter.r: must be a positive integer, got {value!r}")
            if f.name.endswith("_dropout") and not 0.0 <= value < 1.0:
                raise ConfigError(f"adapter.{f.name}: must be in [0, 1), got {value!r}")
            # peft's rule where it marks what trains (`_mark_only_adapters_as_trainable`):
            # VeRA, VB-LoRA and FourierFT check nothing earlier.
            if (
                f.name == "bias"
                and value not in ("none", "all")
                and not str(value).endswith("_only")
            ):
                raise ConfigError(
                    f"adapter.bias: must be 'none', 'all' or the method's '<name>_only' "
                    f"(peft's values), got {value!r}"
                )


def adapter_section(
    name: str,
    peft_config: type,
    keys: Sequence[str],
    defaults: Mapping[str, Any] = {},
) -> type[AdapterConfig]:
    """The adapter section of peft method `name`, derived from its peft config dataclass.

    Its keys are ``type``, ``target_modules`` and `keys`, which are fields of `peft_config`
    under the same names, with peft's annotations and defaults: what a user types is the
    field peft documents, and peft's constructor is the section's validation
    (`gpart.configs.adapters._bridge.to_peft`). Subclass the result to name it and add
    `AdapterConfig.validate` checks peft lacks.

    Args:
        name: the registry name (``type``'s default).
        peft_config: the peft config dataclass (`LoraConfig`, `GPartConfig`, ...).
        keys: the fields of `peft_config` the experiment exposes, in order.
        defaults: a `dataclasses.field` per key whose default or metadata the experiment
            sets, each with a comment where it is given saying why; a field without a
            default keeps peft's. `FOLLOWS_SEED` makes a key ``<peft's type> | None``,
            None by default (the run's seed).

    Returns:
        The dataclass, a subclass of `AdapterConfig`.

    Raises:
        TypeError: a key that is not a field of `peft_config`, or a default for a key not
            in `keys`.
    """
    hints = typing.get_type_hints(peft_config)
    peft_fields = {f.name: f for f in dataclasses.fields(peft_config)}
    unknown = [k for k in keys if k not in peft_fields]
    if unknown:
        raise TypeError(f"{name}: {peft_config.__name__} has no field {', '.join(unknown)}")
    if set(defaults) - set(keys):
        raise TypeError(f"{name}: defaults for keys not exposed: {set(defaults) - set(keys)}")
    specs: list[tuple[str, Any, Any]] = [("type", str, field(default=name))]
    for key in keys:
        peft_field = peft_fields[key]
        given = defaults.get(key, field())
        tp = hints[key]
        if given.metadata.get(FOLLOWS_SEED):
            tp, default = tp | None, None
        elif given.default is not dataclasses.MISSING:
            default = given.default
        else:
            default = peft_field.default
        if default is dataclasses.MISSING:
            raise TypeError(f"{name}: {peft_config.__name__}.{key} has no default; give one")
        specs.append((key, tp, field(default=default, metadata=given.metadata)))
    return dataclasses.make_dataclass(
        f"{peft_config.__name__}Section",
        specs,
        bases=(AdapterConfig,),
        namespace={"__module__": __name__, "peft_config": peft_config},
    )


def fill_seed_fields(adapter: AdapterConfig, seed: int) -> list[str]:
    """Give `adapter`'s `FOLLOWS_SEED` fields still at None the value `seed`, in place.

    Returns:
        The names of the fields filled.
    """
    filled = []
    for f in dataclasses.fields(adapter):
        if f.metadata.get(FOLLOWS_SEED) and getattr(adapter, f.name) is None:
            setattr(adapter, f.name, seed)
            filled.append(f.name)
    return filled


# Sections of ExperimentConfig that hold a dataclass reachable as `section.field`.
SECTIONS = ("model", "adapter", "training", "data", "task")
# Sections that were removed, with what replaced them: their keys are refused with this
# message, and the config.json files of older runs, which still hold them, load without.
REMOVED_SECTIONS = {
    "generation": (
        "decoding is chosen when evaluating, not when training: eval_math.py's "
        "overrides max_new_tokens / prompt_template (greedy; by default a run is evaluated "
        "in its own data.prompt_template)"
    ),
}
# What every run name hashed for those sections while they existed (their defaults, which
# nothing could usefully change): `sweep_identity` adds it back, so no run is renamed.
LEGACY_IDENTITY = {
    "generation": {"max_new_tokens": 512, "temperature": 0.0, "prompt_template": "alpaca"}
}
# Top-level fields settable from the command line.
TOP_LEVEL_KEYS = ("seed", "output_dir")
# Keys chosen by flags because they select presets; overriding them would silently bypass
# the presets that were applied for the flag's value.
FLAG_ONLY_KEYS = {
    "adapter.type": "--adapter_type",
    "model.model_size": "--model_size",
    "domain": "--domain (fixed by the runner)",
    "tasks": "--tasks",
}


@dataclass
class ExperimentConfig:
    """One experiment: a model, an adapter, a training schedule and the tasks to run.

    Build it with `gpart.configs.resolve_experiment` (presets + overrides) or
    `gpart.configs.parse_cli`, not by hand, so that presets and validation apply.
    """

    domain: str = "glue"
    tasks: list[str] = field(default_factory=lambda: ["sst2"])
    seed: int = 42
    output_dir: str = "logs"
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # Overrides for every task of the run (`task.lr`), then for one task (`task.sst2.lr`).
    task: TaskConfig = field(default_factory=TaskConfig)
    per_task: dict[str, TaskConfig] = field(default_factory=dict)
    # Where each non-default value came from: dotted key -> layer label. Filled by
    # resolution; informational only (not part of the config hash).
    sources: dict[str, str] = field(default_factory=dict)

    # ---- effective values -------------------------------------------------------------

    def effective_training(self, task: str) -> TrainingConfig:
        """The `TrainingConfig` a run of `task` actually uses.

        Order: ``training`` < ``task`` (all tasks) < ``per_task[task]``. Resolution clears
        task-level values that a later layer's ``training.x`` overrode, so this simple
        order is also the precedence of the layers.
        """
        self._check_task(task)
        merged = copy.deepcopy(self.training)
        for override in (self.task, self.per_task.get(task)):
            if override is None:
                continue
            for f in dataclasses.fields(override):
                value = getattr(override, f.name)
                if value is not None:
                    setattr(merged, f.name, copy.deepcopy(value))
        return merged

    def effective_keys(self, task: str) -> dict[str, str]:
        """For each `TrainingConfig` field: the key whose value `task` uses.

        ``task.<task>.<field>`` if set, else ``task.<field>`` if set, else ``training.<field>``.
        """
        self._check_task(task)
        per = self.per_task.get(task)
        out = {}
        for f in dataclasses.fields(TrainingConfig):
            if per is not None and getattr(per, f.name) is not None:
                out[f.name] = f"task.{task}.{f.name}"
            elif getattr(self.task, f.name) is not None:
                out[f.name] = f"task.{f.name}"
            else:
                out[f.name] = f"training.{f.name}"
        return out

    def effective_sources(self, task: str) -> dict[str, str]:
        """For each `TrainingConfig` field: the layer its effective value for `task` came from."""
        return {
            name: self.sources.get(key, "default")
            for name, key in self.effective_keys(task).items()
        }

    def for_task(self, task: str) -> ExperimentConfig:
        """A single-task copy whose `training` is the effective one (for a run's config.json)."""
        single = copy.deepcopy(self)
        single.tasks = [task]
        single.training = self.effective_training(task)
        single.task = TaskConfig()
        single.per_task = {}
        single.sources = {k: v for k, v in self.sources.items() if not k.startswith("task.")}
        for name, label in self.effective_sources(task).items():
            if label != "default":
                single.sources[f"training.{name}"] = label
            else:
                single.sources.pop(f"training.{name}", None)
        return single

    def _check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise ConfigError(f"task {task!r} is not in this run (tasks: {', '.join(self.tasks)})")

    # ---- serialisation ---------------------------------------------------------------

    def to_dict(self, *, effective: bool = True) -> dict[str, Any]:
        """A JSON-ready dict of the config.

        ``task``/``per_task`` list only the fields that are set (None means inherit).
        `gpart.configs.experiment_from_dict` rebuilds the config from the result.

        Args:
            effective: add an ``effective`` section: each task's effective training config.

        Returns:
            The dict; its layout is saved in run directories, keep it stable.
        """
        out: dict[str, Any] = {
            "domain": self.domain,
            "tasks": list(self.tasks),
            "seed": self.seed,
            "output_dir": self.output_dir,
            "model": dataclasses.asdict(self.model),
            "adapter": dataclasses.asdict(self.adapter),
            "training": dataclasses.asdict(self.training),
            "data": dataclasses.asdict(self.data),
            "task": _set_fields(self.task),
            "per_task": {name: _set_fields(tc) for name, tc in self.per_task.items()},
        }
        if effective:
            out["effective"] = {
                t: dataclasses.asdict(self.effective_training(t)) for t in self.tasks
            }
        out["sources"] = dict(self.sources)
        return out

    def to_json(self, *, indent: int | None = 2, effective: bool = True) -> str:
        return json.dumps(self.to_dict(effective=effective), indent=indent)


def _set_fields(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}


@cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's init fields (postponed annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}
