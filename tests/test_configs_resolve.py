"""Layered resolution: precedence of every layer, per-task overrides, no preset mutation."""

from __future__ import annotations

import dataclasses

import pytest

import gpart.configs.resolve as resolve_mod
from gpart.configs import (
    ConfigError,
    ExperimentConfig,
    TrainingConfig,
    parse_cli,
    resolve_experiment,
    to_peft_config,
)
from gpart.configs.presets import DomainPresets, freeze, get_presets
from gpart.configs.registry import adapter_names, get_adapter


@pytest.fixture
def layered_presets(monkeypatch):
    """Synthetic glue presets where layers 2-4 all set some of the same keys."""
    real = get_presets("glue")
    fake = DomainPresets(
        domain="glue",
        default_size="base",
        size=freeze(
            {
                "base": freeze(
                    {
                        "model.base_model": "size-model",
                        "training.lr": 4e-3,
                        "training.epochs": 4,
                    }
                )
            }
        ),
        adapter=freeze(
            {
                ("lora", "base"): freeze(
                    {
                        "training.lr": 2e-3,
                        "training.epochs": 2,
                        "training.batch_size": 2,
                        "training.warmup_ratio": 0.2,
                        "adapter.r": 2,
                    }
                )
            }
        ),
        task=freeze(
            {
                ("lora", "sst2", "base"): freeze({"lr": 3e-3, "epochs": 3, "batch_size": 3}),
                ("lora", "rte", "base"): freeze({"batch_size": 5}),
            }
        ),
    )
    monkeypatch.setattr(resolve_mod, "get_presets", lambda d: fake if d == "glue" else real)
    return fake


def test_every_layer_wins_over_the_one_before(layered_presets):
    exp = resolve_experiment(
        adapter="lora", tasks="sst2", overrides={"training.lr": "5e-3", "adapter.lora_alpha": "16"}
    )
    eff = exp.effective_training("sst2")
    assert eff.weight_decay == TrainingConfig().weight_decay  # 1: default
    assert eff.warmup_ratio == 0.2  # 2: adapter preset beats default
    assert exp.adapter.r == 2
    assert eff.batch_size == 3  # 3: task preset beats adapter preset
    assert eff.epochs == 4  # 4: size preset beats task preset
    assert exp.model.base_model == "size-model"
    assert eff.lr == 5e-3  # 5: command line beats everything
    assert exp.adapter.lora_alpha == 16
    src = exp.effective_sources("sst2")
    assert src["weight_decay"].startswith("default")
    assert src["warmup_ratio"].startswith("adapter preset glue/lora/base")
    assert src["batch_size"].startswith("task preset glue/lora/sst2/base")
    assert src["epochs"].startswith("size preset glue/base")
    assert src["lr"].startswith("cli")
    assert exp.sources["adapter.lora_alpha"] == "cli"
    assert "training.weight_decay" not in exp.sources


def test_task_presets_only_touch_their_task(layered_presets):
    exp = resolve_experiment(adapter="lora", tasks="sst2,rte")
    assert exp.effective_training("sst2").batch_size == 3
    assert exp.effective_training("rte").batch_size == 5
    assert exp.effective_training("rte").lr == 4e-3  # size preset, no rte lr preset


def test_cli_training_lr_beats_real_task_preset_lr():
    # LoRA's GLUE task presets set lr per task (sst2: 5e-4); the command line must win.
    base = resolve_experiment(adapter="lora", tasks="sst2,cola")
    assert base.effective_training("sst2").lr == 5e-4
    assert base.effective_training("cola").lr == 4e-4
    exp = resolve_experiment(adapter="lora", tasks="sst2,cola", overrides={"training.lr": "0.001"})
    assert exp.effective_training("sst2").lr == 0.001
    assert exp.effective_training("cola").lr == 0.001
    assert exp.per_task["sst2"].lr is None  # cleared, so no stale value can leak back
    assert "task.sst2.lr" not in exp.sources
    # Other task-preset fields survive.
    assert exp.effective_training("sst2").epochs == 60


def test_cli_head_lr_beats_gpart_task_head_lr():
    exp = resolve_experiment(adapter="gpart", tasks="rte", overrides={"training.head_lr": "1e-4"})
    assert exp.effective_training("rte").head_lr == 1e-4
    assert exp.for_task("rte").training.head_lr == 1e-4


def test_per_task_override_and_all_task_override():
    exp = resolve_experiment(
        adapter="gpart",
        tasks="sst2,rte",
        overrides={"task.sst2.lr": "1e-3", "task.epochs": "3"},
    )
    assert exp.effective_training("sst2").lr == 1e-3
    assert exp.effective_training("rte").lr == 5e-3  # adapter preset
    # task.epochs (command line) beats both tasks' epochs presets (60 and 160).
    assert exp.effective_training("sst2").epochs == 3
    assert exp.effective_training("rte").epochs == 3
    assert exp.training.epochs != 3  # task.* does not rewrite the run-wide value


def test_specificity_within_one_layer():
    exp = resolve_experiment(
        adapter="gpart",
        tasks="sst2,rte",
        overrides=[("task.rte.lr", "3e-3"), ("task.lr", "2e-3"), ("training.lr", "1e-3")],
    )
    # Given in "wrong" order on purpose: the more specific key still wins in a layer.
    assert exp.training.lr == 1e-3
    assert exp.effective_training("sst2").lr == 2e-3
    assert exp.effective_training("rte").lr == 3e-3


def test_task_override_none_restores_inheritance():
    exp = resolve_experiment(adapter="gpart", tasks="sst2", overrides={"task.sst2.epochs": "none"})
    assert exp.effective_training("sst2").epochs == exp.training.epochs


def test_resolution_never_mutates_presets():
    before = {k: dict(v) for k, v in get_presets("glue").adapter.items()}
    first = resolve_experiment(
        adapter="gpart", tasks="sst2", overrides={"adapter.target_modules": "query,key,value"}
    )
    first.adapter.target_modules.append("dense")  # mutate a resolved list in place
    first.per_task["sst2"].epochs = 1
    first.training.lr = 123.0
    second = resolve_experiment(adapter="gpart", tasks="sst2")
    assert second.adapter.target_modules == ["query", "value"]
    assert second.effective_training("sst2").epochs == 60
    assert second.training.lr == 5e-3
    assert {k: dict(v) for k, v in get_presets("glue").adapter.items()} == before
    assert second.adapter.target_modules is not first.adapter.target_modules


def test_presets_are_read_only():
    with pytest.raises(TypeError):
        get_presets("glue").adapter["gpart", "base"]["adapter.d"] = 1  # type: ignore[index]


def test_paper_presets_gpart():
    # The GPart paper's GLUE table: task -> (base epochs, base head_lr, large epochs, large head_lr)
    table = {
        "cola": (80, 2e-3, 60, 2e-2),
        "sst2": (60, 5e-4, 30, 2e-4),
        "mrpc": (30, 1e-3, 40, 2e-3),
        "qnli": (25, 1e-3, 25, 5e-3),
        "rte": (160, 1e-2, 120, 5e-3),
        "stsb": (80, 2e-4, 80, 1e-4),
    }
    for size, col in (("base", 0), ("large", 2)):
        exp = resolve_experiment(adapter="gpart", tasks=list(table), model_size=size)
        assert exp.adapter.d == 23040 and exp.adapter.gpart_dropout == 0.1
        assert exp.adapter.target_modules == ["query", "value"]
        for task, row in table.items():
            eff = exp.effective_training(task)
            assert (eff.epochs, eff.head_lr) == (row[col], row[col + 1]), (size, task)
            assert (eff.lr, eff.batch_size, eff.max_seq_length) == (5e-3, 32, 512)
            assert (eff.weight_decay, eff.warmup_ratio) == (0.1, 0.06)
    assert exp.model.base_model == "FacebookAI/roberta-large"


# The baseline tables of the Uni-LoRA and LoRA papers: task -> (epochs, head_lr) per size for Uni-LoRA, and
# task -> (epochs, batch size, lr) for LoRA (head_lr 1e-3; VeRA takes LoRA's epochs).
UNILORA_TABLE = {
    "base": {"cola": (80, 5e-3), "sst2": (60, 1e-4), "mrpc": (30, 2e-2), "qnli": (25, 2e-4),
             "rte": (80, 5e-4), "stsb": (40, 2e-4)},
    "large": {"cola": (40, 2e-2), "sst2": (20, 2e-4), "mrpc": (40, 2e-3), "qnli": (20, 5e-3),
              "rte": (40, 5e-3), "stsb": (40, 1e-4)},
}  # fmt: skip
LORA_TABLE = {"cola": (80, 32, 4e-4), "sst2": (60, 16, 5e-4), "mrpc": (30, 16, 4e-4),
              "qnli": (25, 32, 4e-4), "rte": (80, 32, 4e-4), "stsb": (40, 16, 4e-4)}  # fmt: skip
SIX = "cola,sst2,mrpc,qnli,rte,stsb"


@pytest.mark.parametrize("size", ["base", "large"])
def test_paper_presets_unilora(size):
    uni = resolve_experiment(adapter="unilora", tasks=SIX, model_size=size)
    assert (uni.adapter.r, uni.adapter.theta_d_length, uni.adapter.init_theta_d_bound) == (
        4,
        23040,
        0.02,
    )
    for task, (epochs, head_lr) in UNILORA_TABLE[size].items():
        eff = uni.effective_training(task)
        assert (eff.epochs, eff.head_lr, eff.lr) == (epochs, head_lr, 5e-3), task


@pytest.mark.parametrize("adapter", ["lora", "dora", "vera"])
def test_paper_presets_lora_family(adapter):
    exp = resolve_experiment(adapter=adapter, tasks=SIX)
    if adapter == "vera":
        assert (exp.adapter.r, exp.adapter.d_initial) == (8, 0.1)
    else:
        assert (exp.adapter.r, exp.adapter.lora_alpha) == (8, 8)
        assert to_peft_config(exp.adapter, seed=0).use_dora == (adapter == "dora")
    for task, (epochs, batch_size, lr) in LORA_TABLE.items():
        eff = exp.effective_training(task)
        assert eff.epochs == epochs, task
        if adapter != "vera":  # VeRA's table gives only LoRA's epochs
            assert (eff.batch_size, eff.lr, eff.head_lr) == (batch_size, lr, 1e-3), task
        else:  # and the reference's fallbacks for the rest
            assert (eff.batch_size, eff.lr, eff.head_lr) == (32, 1e-3, 1e-3), task


@pytest.mark.parametrize("adapter", ["full", "bitfit", "head"])
def test_paper_presets_without_values_of_their_own_run_the_reference_fallbacks(adapter):
    # The reference gives these LoRA's epochs and nothing else: batch 32, lr and head lr
    # 1e-3, on the same loop as every other method.
    exp = resolve_experiment(adapter=adapter, tasks=SIX, model_size="large")
    for task, (epochs, _, _) in LORA_TABLE.items():
        eff = exp.effective_training(task)
        assert (eff.epochs, eff.batch_size, eff.lr, eff.head_lr) == (epochs, 32, 1e-3, 1e-3)
        assert (eff.max_grad_norm, eff.schedule_steps, eff.data_order) == (
            None,
            "reference",
            "reference",
        )


def test_roberta_s_own_full_fine_tuning_recipe_is_one_override_away():
    # The command docs/glue.md gives for RoBERTa's GLUE recipe instead of the reference's.
    argv = ["--adapter_type", "full", "--tasks", "sst2", "rte", "training.lr", "2e-5"]
    exp, _ = parse_cli([*argv, "training.head_lr", "none", "task.epochs", "10"])
    for task in ("sst2", "rte"):
        eff = exp.effective_training(task)
        assert (eff.lr, eff.head_lr, eff.epochs) == (2e-5, None, 10)


@pytest.mark.parametrize("domain", ["glue", "vision", "math"])
def test_every_preset_resolves(domain):
    # Catches typos in preset keys/values: each preset goes through the same validation.
    presets = get_presets(domain)
    from gpart.configs.tasks import get_domain

    tasks = list(get_domain(domain).tasks)
    for adapter in adapter_names():
        for size in presets.sizes():
            if presets.size[size].get("model.quantization", "none") != "none" and not (
                get_adapter(adapter).is_peft
            ):
                # a 4-bit size: adapters that train the base's own tensors are refused
                with pytest.raises(ConfigError, match=f"--adapter_type {adapter} trains"):
                    resolve_experiment(domain=domain, adapter=adapter, tasks=tasks, model_size=size)
                continue
            exp = resolve_experiment(domain=domain, adapter=adapter, tasks=tasks, model_size=size)
            assert exp.model.base_model
            for task in tasks:
                exp.effective_training(task)
    for adapter, *_ in list(presets.adapter) + list(presets.task):
        assert adapter in adapter_names()


def test_seed_following_fields():
    exp = resolve_experiment(adapter="gpart", overrides={"seed": "7"})
    assert exp.adapter.proj_seed == 7 and exp.sources["adapter.proj_seed"] == "seed"
    pinned = resolve_experiment(adapter="gpart", overrides={"seed": "7", "adapter.proj_seed": "3"})
    assert pinned.adapter.proj_seed == 3
    # VeRA's GLUE preset pins the reference's key 0; `none` makes it follow the seed again.
    assert (
        resolve_experiment(adapter="vera", overrides={"seed": "9"}).adapter.projection_prng_key == 0
    )
    vera = resolve_experiment(
        adapter="vera", overrides={"seed": "9", "adapter.projection_prng_key": "none"}
    )
    assert vera.adapter.projection_prng_key == 9


def test_validation_errors():
    cases = {
        "training.batch_size": ("0", "must be > 0"),
        "training.warmup_ratio": ("1.5", r"in \[0, 1\], got 1.5 \(from cli\)"),
        "task.sst2.lr": ("-1", r"must be > 0, got -1.0 \(from cli\)"),
        "adapter.gpart_dropout": ("1.0", r"in \[0, 1\)"),
        "adapter.d": ("0", "positive"),
        "training.head_weight_decay": ("-0.1", "must be >= 0"),
        "task.sst2.eval_every": ("0", r"must be > 0 \(or none\)"),
        "training.logging_steps": ("0", "must be > 0"),
        "training.num_workers": ("-1", "must be >= 0"),
        "training.save_total_limit": ("-1", "must be >= 0"),
        "data.max_train_samples": ("0", r"must be > 0 \(or none for all rows\)"),
        "data.max_eval_samples": ("-5", "must be > 0"),
        "training.lr": ("inf", "finite"),
    }
    for key, (value, msg) in cases.items():
        with pytest.raises(ConfigError, match=msg) as err:
            resolve_experiment(adapter="gpart", overrides={key: value})
        assert str(err.value).startswith(key + ":")
    with pytest.raises(ConfigError, match="model_selection best"):
        resolve_experiment(
            overrides={"training.early_stopping_patience": "3", "training.model_selection": "last"}
        )
    # Peft's own checks run at resolution, before anything is written.
    with pytest.raises(ConfigError, match=r"adapter\.topk: must be in \[1, num_vectors=256\]"):
        resolve_experiment(adapter="vblora", overrides={"adapter.topk": "300"})
    # Checks only peft's config class makes also fail at resolution, as ConfigError led by
    # the key peft's message names.
    with pytest.raises(ConfigError, match=r"^adapter\.layers_pattern: layers_pattern is only"):
        resolve_experiment(adapter="gpart", overrides={"adapter.layers_pattern": "layer"})
    # What peft checks only when it builds the layers (a rank, a dropout probability) is
    # checked at resolution too, for every method that has the field.
    late = {
        ("lora", "adapter.r", "0"): "must be a positive integer, got 0",
        ("vera", "adapter.r", "-2"): "must be a positive integer, got -2",
        ("unilora", "adapter.r", "0"): "must be a positive integer, got 0",
        ("lora", "adapter.lora_dropout", "1.5"): r"must be in \[0, 1\), got 1.5",
        ("vera", "adapter.vera_dropout", "1"): r"must be in \[0, 1\), got 1.0",
        ("vblora", "adapter.vblora_dropout", "-0.1"): r"must be in \[0, 1\), got -0.1",
        ("vera", "adapter.bias", "nonee"): "must be 'none', 'all' or the method's .*'nonee'",
        ("vblora", "adapter.bias", "lora"): "must be 'none', 'all' or the method's .*'lora'",
        ("fourierft", "adapter.bias", "yes"): "must be 'none', 'all' or the method's .*'yes'",
    }
    for (adapter, key, value), msg in late.items():
        with pytest.raises(ConfigError, match=msg) as err:
            resolve_experiment(adapter=adapter, overrides={key: value})
        assert str(err.value).startswith(key + ":")


def test_keys_renamed_to_peft_field_names_say_so():
    cases = {
        ("gpart", "adapter.grouping"): "adapter.grouping_strategy (peft's GPartConfig field)",
        ("gpart", "adapter.dropout"): "adapter.gpart_dropout (peft's GPartConfig field)",
        ("lora", "adapter.alpha"): "adapter.lora_alpha (peft's LoraConfig field)",
        ("dora", "adapter.dropout"): "adapter.lora_dropout (peft's LoraConfig field)",
        ("unilora", "adapter.d"): "adapter.theta_d_length (peft's UniLoraConfig field)",
    }
    for (adapter, key), new in cases.items():
        with pytest.raises(ConfigError) as err:
            resolve_experiment(adapter=adapter, overrides={key: "1"})
        assert str(err.value) == f"{key} was renamed {new}"
    with pytest.raises(ConfigError, match="^adapter.dropout was removed: adapter 'fourierft'"):
        resolve_experiment(adapter="fourierft", overrides={"adapter.dropout": "0"})


def test_unused_fields_are_refused_not_ignored():
    with pytest.raises(ConfigError, match="unknown key 'adapter.isometric'"):
        resolve_experiment(adapter="full", tasks="sst2", overrides={"adapter.isometric": "0"})
    with pytest.raises(ConfigError, match="adapter.target_modules: adapter 'head'"):
        resolve_experiment(adapter="head", overrides={"adapter.target_modules": "query"})


def test_resolve_argument_errors():
    with pytest.raises(ConfigError, match="did you mean 'gpart'"):
        resolve_experiment(adapter="gprat")
    with pytest.raises(ConfigError, match="did you mean 'sst2'.*choices: cola"):
        resolve_experiment(tasks="sst3")
    with pytest.raises(ConfigError, match="did you mean 'large'"):
        resolve_experiment(model_size="lage")
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_experiment(tasks="sst2,sst2")
    with pytest.raises(ConfigError, match="given twice"):
        resolve_experiment(overrides=[("training.lr", "1"), ("training.lr", "2")])


def test_all_tasks_and_domains():
    exp = resolve_experiment(tasks="all")
    assert exp.tasks == ["cola", "sst2", "mrpc", "qnli", "rte", "stsb", "mnli", "qqp"]
    vision = resolve_experiment(domain="vision", adapter="lora")
    assert len(vision.tasks) == 9 and "vit" in vision.model.base_model  # the paper's nine
    math = resolve_experiment(domain="math", adapter="lora", tasks="gsm8k,math")
    assert math.effective_training("gsm8k").precision == "bf16"


def test_resolution_returns_a_fresh_experiment_config():
    a = resolve_experiment()
    b = resolve_experiment()
    assert isinstance(a, ExperimentConfig) and a == b and a is not b
    for f in dataclasses.fields(a):
        value = getattr(a, f.name)
        if isinstance(value, (list, dict)) or dataclasses.is_dataclass(value):
            assert value is not getattr(b, f.name), f.name
