"""Layered resolution of an `ExperimentConfig` (later layers win):

1. dataclass defaults
2. adapter preset            ``(adapter, model size)``
3. task preset               ``(adapter, task, model size)``, one per task of the run
4. model-size preset         ``model size``
5. overrides                 the command line (or a Python dict)

Every layer is a mapping from dotted keys (the command line's syntax) to values. Within a
layer, more specific keys apply last: ``training.lr`` < ``task.lr`` < ``task.sst2.lr``.
Across layers, a later general key beats an earlier specific one: ``training.lr 0.001`` on
the command line replaces a task preset's ``task.sst2.lr`` (the earlier task-level value
is cleared), because command-line values always win.

The result records in ``sources`` which layer set each non-default value.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpart.configs.coerce import coerce
from gpart.configs.errors import ConfigError, closest, did_you_mean, format_choices
from gpart.configs.legacy import renamed_key_message
from gpart.configs.presets import get_presets
from gpart.configs.registry import adapter_names, get_adapter
from gpart.configs.schema import (
    FLAG_ONLY_KEYS,
    REMOVED_SECTIONS,
    SECTIONS,
    TOP_LEVEL_KEYS,
    ExperimentConfig,
    ModelConfig,
    TaskConfig,
    field_types,
    fill_seed_fields,
)
from gpart.configs.tasks import get_domain, get_task

CLI = "cli"


@dataclass(frozen=True)
class Key:
    """A parsed, validated dotted key."""

    text: str
    section: str | None  # None: a top-level field (seed, output_dir)
    field: str
    task: str | None  # set for task.<name>.<field>
    annotation: Any

    @property
    def specificity(self) -> int:
        if self.section != "task":
            return 0
        return 2 if self.task else 1


def _section_obj(exp: ExperimentConfig, section: str) -> Any:
    return getattr(exp, section)


def _section_fields(exp: ExperimentConfig, section: str) -> dict[str, Any]:
    types_ = field_types(type(_section_obj(exp, section)))
    return {k: v for k, v in types_.items() if f"{section}.{k}" not in FLAG_ONLY_KEYS}


def valid_keys(exp: ExperimentConfig, *, per_task: bool = True) -> list[str]:
    """Every key an override may set for `exp` (its adapter decides the ``adapter.*`` keys)."""
    keys = list(TOP_LEVEL_KEYS)
    for section in SECTIONS:
        keys += [f"{section}.{f}" for f in _section_fields(exp, section)]
    if per_task:
        for task in exp.tasks:
            keys += [f"task.{task}.{f}" for f in field_types(TaskConfig)]
    return keys


def parse_key(exp: ExperimentConfig, text: str) -> Key:
    """Validate dotted key `text` against `exp`.

    Args:
        exp: the config the key would set (its adapter and tasks decide the valid keys).
        text: a dotted key such as ``training.lr`` or ``task.rte.epochs``.

    Returns:
        The parsed `Key`, with the field's annotation.

    Raises:
        ConfigError: the key is unknown or chosen by a flag; the message names the closest
            valid key.
    """
    if text in FLAG_ONLY_KEYS:
        raise ConfigError(f"{text}: set it with {FLAG_ONLY_KEYS[text]}, not as an override")
    parts = text.split(".")
    top_types = field_types(ExperimentConfig)
    if len(parts) == 1 and text in TOP_LEVEL_KEYS:
        return Key(text, None, text, None, top_types[text])
    if parts[0] in REMOVED_SECTIONS:
        raise ConfigError(
            f"{text}: the {parts[0]} section was removed; {REMOVED_SECTIONS[parts[0]]}"
        )
    if len(parts) == 2 and parts[0] in SECTIONS:
        section, name = parts
        fields = _section_fields(exp, section)
        if name in fields:
            return Key(text, section, name, None, fields[name])
        raise ConfigError(_unknown_field_message(exp, text, section, name, fields))
    if len(parts) == 3 and parts[0] == "task":
        _, task, name = parts
        domain_tasks = get_domain(exp.domain).tasks
        if task not in domain_tasks:
            raise ConfigError(
                f"{text}: {task!r} is not a {exp.domain} task{did_you_mean(task, domain_tasks)}; "
                f"tasks: {', '.join(domain_tasks)}"
            )
        if task not in exp.tasks:
            raise ConfigError(
                f"{text}: task {task!r} is not in this run (tasks: {', '.join(exp.tasks)}); "
                f"add it with --tasks"
            )
        fields = field_types(TaskConfig)
        if name in fields:
            return Key(text, "task", name, task, fields[name])
        raise ConfigError(_unknown_field_message(exp, text, "task", name, fields))
    if parts[0] in SECTIONS and len(parts) < 2:
        fields = _section_fields(exp, parts[0])
        raise ConfigError(
            f"{text}: needs a field, e.g. {parts[0]}.<field>; valid: "
            + format_choices(f"{parts[0]}.{f}" for f in fields)
        )
    # Unknown section or shape: suggest over every key, then name the sections.
    hint = _suggest_full_key(exp, text)
    raise ConfigError(
        f"unknown key {text!r}{hint}; keys are {', '.join(TOP_LEVEL_KEYS)} or "
        f"<section>.<field> with section one of {', '.join(SECTIONS)}, "
        f"or task.<task>.<field>"
    )


# transformers' TrainingArguments names, which users type out of habit.
_LEAF_ALIASES = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "scheduler",
    "warmup": "warmup_ratio",
}


def _suggest_full_key(exp: ExperimentConfig, text: str) -> str:
    """The keys whose field is `text`'s last component (``lr`` -> ``training.lr``), else
    the closest key overall, else the keys of the closest field name."""
    keys = valid_keys(exp, per_task=False)
    by_leaf: dict[str, list[str]] = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    leaf = text.rsplit(".", 1)[-1]
    leaf = _LEAF_ALIASES.get(leaf, leaf)
    match = by_leaf.get(leaf)
    if not match:
        hint = did_you_mean(text, keys)
        if hint:
            return hint
        match = by_leaf.get(closest(leaf, by_leaf) or "", [])
    if not match:
        return ""
    return "; did you mean " + " or ".join(repr(k) for k in match[:3]) + "?"


def _unknown_field_message(
    exp: ExperimentConfig, text: str, section: str, name: str, fields: Mapping[str, Any]
) -> str:
    prefix = text.rsplit(".", 1)[0]
    alias = _LEAF_ALIASES.get(name)
    match = alias if alias in fields else closest(name, fields)
    msg = f"unknown key {text!r}" + (f"; did you mean '{prefix}.{match}'?" if match else "")
    if section == "adapter":
        peft_config = exp.adapter.peft_config
        renamed = renamed_key_message(exp.adapter.type, name, peft_config and peft_config.__name__)
        if renamed:
            return renamed
        # The commonest adapter mistake is a field of another adapter (adapter.r for gpart).
        owners = [a for a in adapter_names() if name in field_types(get_adapter(a).config_cls)]
        if owners:
            msg += (
                f" ({name!r} belongs to adapter {', '.join(owners)}; "
                f"this run's adapter is {exp.adapter.type!r})"
            )
    return msg + f"; valid {prefix} keys: " + format_choices(f"{prefix}.{f}" for f in fields)


def apply_layer(exp: ExperimentConfig, layer: Mapping[str, Any] | Iterable, label: str) -> None:
    """Apply one layer of ``key -> value`` to `exp` in place, recording `label` as source.

    Values are deep-copied (presets are never aliased) and coerced by the field annotation.
    Within the layer, general keys apply before specific ones; a general ``training.x`` or
    ``task.x`` clears the task-level values of ``x`` that earlier layers set.

    Args:
        exp: the config being resolved; modified in place.
        layer: dotted key -> value, as a mapping or a sequence of pairs.
        label: the layer's name, recorded in ``exp.sources`` for every key it sets.

    Raises:
        ConfigError: an unknown key or a value that does not match its annotation.
    """
    items = layer.items() if isinstance(layer, Mapping) else layer
    parsed = [(parse_key(exp, k), v) for k, v in items]
    parsed.sort(key=lambda kv: kv[0].specificity)  # stable: general before specific
    for key, raw in parsed:
        value = coerce(copy.deepcopy(raw), key.annotation, key.text)
        if key.section is None:
            setattr(exp, key.field, value)
        elif key.task is not None:
            setattr(exp.per_task.setdefault(key.task, TaskConfig()), key.field, value)
        else:
            setattr(_section_obj(exp, key.section), key.field, value)
        exp.sources[key.text] = label
        # A later general value beats earlier specific ones: clear them.
        if key.section in ("training", "task") and key.task is None:
            if key.section == "training" and key.field in field_types(TaskConfig):
                _clear(exp, f"task.{key.field}", exp.task, key.field)
            if key.field in field_types(TaskConfig):
                for task, tc in exp.per_task.items():
                    _clear(exp, f"task.{task}.{key.field}", tc, key.field)


def _clear(exp: ExperimentConfig, text: str, obj: Any, name: str) -> None:
    if getattr(obj, name) is not None:
        setattr(obj, name, None)
    exp.sources.pop(text, None)


def _normalise_tasks(domain: str, tasks: Sequence[str] | str | None) -> list[str]:
    dom = get_domain(domain)
    if tasks is None:
        return list(dom.default_tasks)
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    out: list[str] = []
    for t in tasks:
        t = t.strip()
        if t == "all":
            out += [n for n in dom.tasks if n not in out]
            continue
        try:
            t = get_task(domain, t).name  # the canonical name of an alias
        except ConfigError as exc:
            raise ConfigError(f"--tasks: {exc}") from None
        if t in out:
            raise ConfigError(f"--tasks: {t!r} is listed twice")
        out.append(t)
    if not out:
        raise ConfigError(f"--tasks: no task given; choices: {', '.join(dom.tasks)}, all")
    return out


def resolve_experiment(
    *,
    domain: str = "glue",
    adapter: str = "gpart",
    tasks: Sequence[str] | str | None = None,
    model_size: str | None = None,
    overrides: Mapping[str, Any] | Sequence[tuple[str, Any]] = (),
    override_label: str = CLI,
) -> ExperimentConfig:
    """Resolve the five layers into a new, validated `ExperimentConfig`.

    Never mutates the presets: each call starts from fresh dataclasses and deep-copies.

    Args:
        domain: ``glue``, ``vision`` or ``math``.
        adapter: a registered adapter name (`gpart.configs.adapter_names()`).
        tasks: task names, a comma-separated string, or ``"all"``; None: the domain default.
        model_size: a size of the domain's presets (glue: base, large); None: the default.
        overrides: layer 5, ``{"training.lr": "1e-3", "task.sst2.epochs": 3}``; strings are
            parsed by annotation, other values validated. Pairs may be given as a sequence.
        override_label: how `sources` names layer 5.

    Returns:
        The resolved config, with ``sources`` naming the layer of each non-default value.

    Raises:
        ConfigError: an unknown adapter, size, task or key, a key given twice, or an
            invalid value.
    """
    spec = get_adapter(adapter)
    presets = get_presets(domain)
    size = presets.default_size if model_size is None else model_size
    if size not in presets.size:
        raise ConfigError(
            f"--model_size: {size!r} is not a {domain} size{did_you_mean(size, presets.size)}; "
            f"choices: {', '.join(presets.size)}"
        )
    run_tasks = _normalise_tasks(domain, tasks)

    # Layer 1: dataclass defaults.
    exp = ExperimentConfig(
        domain=domain,
        tasks=run_tasks,
        model=ModelConfig(model_size=size),
        adapter=spec.config_cls(),
    )
    # Layer 2: adapter preset.
    layer = presets.adapter.get((adapter, size))
    if layer:
        apply_layer(exp, layer, f"adapter preset {domain}/{adapter}/{size}")
    # Layer 3: task presets, one per task of the run.
    for task in run_tasks:
        layer = presets.task.get((adapter, task, size))
        if layer:
            apply_layer(
                exp,
                {f"task.{task}.{k}": v for k, v in layer.items()},
                f"task preset {domain}/{adapter}/{task}/{size}",
            )
    # Layer 4: model-size preset.
    layer = presets.size.get(size)
    if layer:
        apply_layer(exp, layer, f"size preset {domain}/{size}")
    # Layer 5: overrides.
    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    seen: set[str] = set()
    for k, _ in pairs:
        if k in seen:
            raise ConfigError(f"{k}: given twice; give each key once")
        seen.add(k)
    if pairs:
        apply_layer(exp, pairs, override_label)

    # Seed-following fields still None take the run's seed, visibly.
    for name in fill_seed_fields(exp.adapter, exp.seed):
        exp.sources[f"adapter.{name}"] = "seed"
    validate(exp)
    return exp


def validate(exp: ExperimentConfig) -> None:
    """Cross-field checks that annotations cannot express.

    Training values are checked per task as they will run, and a message names the key
    that set the bad value (``task.rte.lr``, ``training.lr``) and the layer it came from.

    Args:
        exp: a resolved config.

    Raises:
        ConfigError: on the first invalid value (peft's own config checks included).
    """
    exp.adapter.validate()
    for task in exp.tasks:
        _validate_training(exp, task)
    _validate_data(exp)
    spec = get_adapter(exp.adapter.type)
    if exp.model.quantization != "none" and not spec.is_peft:
        # bitfit / head / full train tensors of the base itself, which a quantized base
        # holds as frozen integer codes (and Trainer refuses a quantized model without an
        # adapter).
        raise ConfigError(
            f"model.quantization {exp.model.quantization}: --adapter_type "
            f"{exp.adapter.type} trains the base model's own tensors, which a quantized base "
            "cannot; use a peft adapter (gpart, lora, ...) or model.quantization none"
        )
    if spec.is_peft:
        # Build the peft config once now: peft's own checks fail here, before any output.
        from gpart.configs.bridge import to_peft_config

        to_peft_config(exp.adapter, seed=exp.seed)


def _validate_training(exp: ExperimentConfig, task: str) -> None:
    tc = exp.effective_training(task)
    keys = exp.effective_keys(task)

    def fail(name: str, what: str) -> None:
        key = keys[name]
        label = exp.sources.get(key, "default")
        raise ConfigError(f"{key}: {what}, got {getattr(tc, name)!r} (from {label})")

    for name in ("batch_size", "epochs", "grad_accum", "max_seq_length", "lr"):
        if not getattr(tc, name) > 0:
            fail(name, "must be > 0")
    for name in (
        "eval_batch_size",
        "max_steps",
        "eval_every",
        "early_stopping_patience",
        "head_lr",
        "max_grad_norm",
    ):
        if getattr(tc, name) is not None and not getattr(tc, name) > 0:
            fail(name, "must be > 0 (or none)")
    if not tc.logging_steps > 0:
        fail("logging_steps", "must be > 0")
    for name in ("num_workers", "save_total_limit"):
        value = getattr(tc, name)
        if value is not None and value < 0:
            fail(name, "must be >= 0" + (" (or none)" if name == "save_total_limit" else ""))
    if not 0.0 <= tc.warmup_ratio <= 1.0:
        fail("warmup_ratio", "must be in [0, 1]")
    if tc.weight_decay < 0:
        fail("weight_decay", "must be >= 0")
    if tc.head_weight_decay is not None and tc.head_weight_decay < 0:
        fail("head_weight_decay", "must be >= 0 (or none)")
    if not 0.0 <= tc.label_smoothing < 1.0:
        fail("label_smoothing", "must be in [0, 1)")
    if tc.early_stopping_patience is not None and tc.model_selection != "best":
        # Early stopping needs the best checkpoint tracked; "last" would discard it.
        fail("early_stopping_patience", "needs training.model_selection best")
    # Which tracker names exist is transformers' to say, and asking it imports torch: the
    # runner checks them before the first run (`gpart.runners.tracking.check_report_to`).
    # Here only the shape of the list.
    if len(set(tc.report_to)) != len(tc.report_to):
        fail("report_to", "names a tracker twice")
    for alone in ("none", "all"):
        if alone in tc.report_to and len(tc.report_to) > 1:
            fail("report_to", f"{alone!r} stands alone (write `{alone}`)")
    if tc.run_name is not None and not tc.run_name.strip():
        fail("run_name", "must not be empty (or none: the sweep's run name)")


def _validate_data(exp: ExperimentConfig) -> None:
    def fail(key: str, what: str, value: Any) -> None:
        label = exp.sources.get(key, "default")
        raise ConfigError(f"{key}: {what}, got {value!r} (from {label})")

    data = exp.data
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(data, name)
        if value is not None and value <= 0:
            fail(f"data.{name}", "must be > 0 (or none for all rows)", value)
    if data.heldout_samples < 0:
        fail("data.heldout_samples", "must be >= 0 (0: nothing held out)", data.heldout_samples)
    if data.heldout_samples == 0 and exp.domain == "math":
        best = [t for t in exp.tasks if exp.effective_training(t).model_selection == "best"]
        if best:
            fail(
                "data.heldout_samples",
                "leaves no rows for training.model_selection best to select on (hold some "
                "out, or pass training.model_selection last)",
                0,
            )
    if data.image_size <= 0:
        fail("data.image_size", "must be > 0", data.image_size)
