"""Schema: per-task overrides (TaskConfig), serialisation, hashing, task metadata."""

from __future__ import annotations

import dataclasses
import json
import pickle
import types
import typing
from typing import Literal

import pytest

from gpart.configs import (
    ConfigError,
    TaskConfig,
    TrainingConfig,
    experiment_from_dict,
    get_domain,
    get_task,
    resolve_experiment,
)
from gpart.configs.schema import field_types


def _other_value(tp, default):
    """A valid value of annotation `tp` that differs from `default`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is Literal:
        return next(c for c in typing.get_args(tp) if c != default)
    if tp is bool:
        return not default
    if tp is int:
        return 3 if default is None else default + 1
    if tp is float:
        return 0.5 if not default else default / 2
    if tp is str:
        return "other" if default != "other" else "another"
    if typing.get_origin(tp) is list and typing.get_args(tp) == (str,):
        return ["mlflow", "wandb"] if default != ["mlflow", "wandb"] else ["none"]
    raise AssertionError(f"no test value for {tp!r}")


def test_task_config_defaults_to_inherit():
    task = TaskConfig()
    assert [f.name for f in dataclasses.fields(task)] == [
        f.name for f in dataclasses.fields(TrainingConfig)
    ]
    assert all(v is None for v in dataclasses.asdict(task).values())
    assert (TaskConfig.__name__, TaskConfig.__module__) == ("TaskConfig", "gpart.configs.schema")
    assert TaskConfig.__doc__.startswith("Per-task overrides of `TrainingConfig`")
    assert pickle.loads(pickle.dumps(TaskConfig(lr=0.1))) == TaskConfig(lr=0.1)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(TrainingConfig)])
def test_every_training_field_is_a_task_override(name):
    # Settable for all tasks (task.<field>) and for one task (task.<task>.<field>), from
    # command-line text, and reaching only the task(s) it names.
    base = resolve_experiment(tasks="sst2,rte")
    default = getattr(base.effective_training("rte"), name)
    value = _other_value(field_types(TrainingConfig)[name], default)
    assert getattr(TaskConfig(), name) is None
    text = _cli_text(value)

    one = resolve_experiment(tasks="sst2,rte", overrides={f"task.rte.{name}": text})
    assert getattr(one.per_task["rte"], name) == value
    assert getattr(one.effective_training("rte"), name) == value
    assert getattr(one.effective_training("sst2"), name) == getattr(
        base.effective_training("sst2"), name
    )
    assert one.effective_keys("rte")[name] == f"task.rte.{name}"
    assert one.to_dict()["per_task"]["rte"][name] == value

    every = resolve_experiment(tasks="sst2,rte", overrides={f"task.{name}": text})
    assert getattr(every.task, name) == value
    for task in ("sst2", "rte"):  # beats the task presets of the earlier layer too
        assert every.effective_keys(task)[name] == f"task.{name}"
        assert getattr(every.effective_training(task), name) == value
    assert every.to_dict()["task"] == {name: value}


def test_task_overrides_reject_bad_values_like_training_fields():
    with pytest.raises(ConfigError, match=r"task\.rte\.scheduler: expected one of linear, cosine"):
        resolve_experiment(tasks="rte", overrides={"task.rte.scheduler": "cosin"})
    with pytest.raises(ConfigError, match=r"task\.precision: .*did you mean 'bf16'"):
        resolve_experiment(tasks="rte", overrides={"task.precision": "bf17"})
    with pytest.raises(ConfigError, match=r"task\.rte\.epochs: expected an integer"):
        resolve_experiment(tasks="rte", overrides={"task.rte.epochs": "1.5"})
    # "none" is a valid value of every override: it means "inherit".
    exp = resolve_experiment(tasks="rte", overrides={"task.rte.scheduler": "none"})
    assert exp.effective_training("rte").scheduler == exp.training.scheduler


def test_training_defaults():
    t = TrainingConfig()
    assert (t.batch_size, t.max_seq_length, t.lr, t.head_lr) == (32, 512, 1e-3, 1e-3)
    assert (t.weight_decay, t.warmup_ratio, t.scheduler, t.grad_accum) == (0.1, 0.06, "linear", 1)
    assert (t.precision, t.model_selection, t.early_stopping_patience) == ("fp32", "best", None)


def test_round_trip_through_json():
    exp = resolve_experiment(
        adapter="lora", tasks="sst2,rte", overrides={"task.rte.lr": "2e-4", "seed": "3"}
    )
    data = json.loads(exp.to_json())
    back = experiment_from_dict(data)
    assert back == exp
    assert type(back.adapter).__name__ == "LoraAdapterConfig"
    assert data["effective"]["rte"]["lr"] == 2e-4
    assert data["per_task"]["rte"] == {"epochs": 80, "batch_size": 32, "lr": 2e-4}


def test_from_dict_validates():
    data = resolve_experiment().to_dict()
    data["training"]["lrr"] = 1
    with pytest.raises(ConfigError, match=r"training: unknown keys \['lrr'\]"):
        experiment_from_dict(data)
    data = resolve_experiment().to_dict()
    data["adapter"]["d"] = "lots"
    with pytest.raises(ConfigError, match="adapter.d: expected an integer"):
        experiment_from_dict(data)


def test_for_task_is_the_effective_single_task_config():
    exp = resolve_experiment(tasks="sst2,rte", overrides={"training.lr": "1e-3"})
    rte = exp.for_task("rte")
    assert rte.tasks == ["rte"] and rte.per_task == {} and rte.task == TaskConfig()
    assert rte.training == exp.effective_training("rte")
    assert rte.training.epochs == 160
    assert rte.sources["training.epochs"] == "task preset glue/gpart/rte/base"
    assert rte.sources["training.lr"] == "cli"
    assert exp.per_task["rte"].epochs == 160  # the original is untouched


def test_glue_task_metadata():
    names = ["cola", "sst2", "mrpc", "qnli", "rte", "stsb", "mnli", "qqp"]
    assert list(get_domain("glue").tasks) == names
    for name in names:
        t = get_task("glue", name)
        assert t.source == "nyu-mll/glue" and t.subset == name
        assert t.primary_metric in t.metrics and t.text_columns
    stsb = get_task("glue", "stsb")
    assert stsb.num_labels == 1 and stsb.problem_type == "regression"
    assert stsb.primary_metric == "pearson"
    assert get_task("glue", "cola").primary_metric == "mcc"
    assert get_task("glue", "mnli").num_labels == 3
    assert get_task("glue", "mnli").splits["eval"] == "validation_matched"
    assert get_task("glue", "mrpc").text_columns == ("sentence1", "sentence2")


def test_vision_and_math_metadata():
    c100 = get_task("vision", "cifar100")
    assert (c100.num_labels, c100.label_column, c100.image_column) == (100, "fine_label", "img")
    gsm = get_task("math", "gsm8k")
    assert (gsm.answer_format, gsm.grading, gsm.subset) == ("solution", "gsm8k", "main")
    assert get_task("math", "math500").answer_format == "plain"
    assert get_domain("math").train_source == "meta-math/MetaMathQA"
    assert get_domain("math").peft_task_type == "CAUSAL_LM"
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        get_task("vision", "cifar1O")
    with pytest.raises(ConfigError, match="did you mean 'glue'"):
        get_domain("gleu")


def test_metadata_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_task("glue", "sst2").label_names = ("a", "b", "c")  # type: ignore[misc]
    with pytest.raises(TypeError):
        get_task("glue", "sst2").splits["train"] = "x"  # type: ignore[index]


def test_primary_metric_must_be_a_metric():
    from gpart.configs.tasks import TextClassificationTask

    with pytest.raises(ValueError, match="primary_metric"):
        TextClassificationTask(
            name="x",
            domain="glue",
            source="s",
            display_name="X",
            text_columns=("a",),
            label_names=("no", "yes"),
            metrics=("accuracy",),
            primary_metric="f1",
        )


def _cli_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def test_every_field_default_round_trips_through_cli_text():
    # Every settable field's annotation is understood by the coercer, and every value a
    # field holds by default can be typed back on the command line.
    from gpart.configs import adapter_names, get_adapter
    from gpart.configs.coerce import coerce
    from gpart.configs.schema import DataConfig, ModelConfig

    classes = [TrainingConfig, TaskConfig, DataConfig, ModelConfig]
    classes += [get_adapter(a).config_cls for a in adapter_names()]
    for cls in classes:
        obj = cls()
        for name, tp in field_types(cls).items():
            value = getattr(obj, name)
            assert coerce(_cli_text(value), tp, name) == value, (cls.__name__, name)


def test_the_removed_generation_section_is_refused_and_old_configs_still_load():
    # `generation.*` once existed and nothing read it: a value set at training time did not
    # reach the evaluation. Setting it is now an error naming what decides decoding.
    with pytest.raises(ConfigError, match=r"generation.max_new_tokens: .*eval_math.py"):
        resolve_experiment(domain="math", tasks="metamathqa", overrides={
            "generation.max_new_tokens": "1024"})  # fmt: skip
    # config.json of a run made while it existed still loads (the section is ignored)
    data = resolve_experiment().to_dict()
    assert "generation" not in data
    old = {**data, "generation": {"max_new_tokens": 512, "temperature": 0.0,
                                  "prompt_template": "alpaca"}}  # fmt: skip
    assert experiment_from_dict(old) == experiment_from_dict(data)
