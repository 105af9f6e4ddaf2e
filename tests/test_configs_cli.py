"""Command line: flags, `key value` overrides, every error path, --print_config."""

from __future__ import annotations

import json
import re

import pytest

from gpart.configs import (
    ConfigError,
    build_parser,
    exit_on_config_error,
    parse_cli,
    resolve_experiment,
)
from gpart.runners.cli import cli_main


def _error(argv, **kw) -> str:
    with pytest.raises(ConfigError) as err:
        parse_cli(argv, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_readme_style_command_round_trip():
    cfg, flags = parse_cli(
        [
            "--adapter_type",
            "gpart",
            "--tasks",
            "sst2",
            "--seed",
            "3",
            "adapter.d",
            "16384",
            "adapter.isometric",
            "False",
            "training.lr",
            "0.001",
            "task.sst2.epochs",
            "3",
        ]
    )
    assert cfg.adapter.d == 16384 and cfg.adapter.isometric is False
    assert cfg.effective_training("sst2").lr == 0.001
    assert cfg.effective_training("sst2").epochs == 3
    assert cfg.seed == 3 and cfg.adapter.proj_seed == 3  # proj_seed follows --seed
    assert not flags.print_config and not flags.compute_params_only
    for key in ("adapter.d", "adapter.isometric", "training.lr", "task.sst2.epochs", "seed"):
        assert cfg.sources[key] == "cli"


def test_flags_map_to_keys():
    cfg, _ = parse_cli(
        [
            "--data_dir",
            "/data",
            "--base_model",
            "/models/rb",
            "--output_dir",
            "out",
            "--model_size",
            "large",
        ]
    )
    assert cfg.data.data_dir == "/data"
    assert cfg.model.base_model == "/models/rb"  # beats the size preset
    assert cfg.output_dir == "out"
    assert cfg.model.model_size == "large"
    assert cfg.effective_training("sst2").epochs == 30  # gpart large sst2 preset


def test_every_coercion_through_the_cli():
    cfg, _ = parse_cli(
        ["--tasks", "sst2,rte"]
        + ["adapter.isometric", "no", "training.gradient_checkpointing", "YES"]
        + ["training.lr", "1e-3", "training.epochs", "7", "training.max_grad_norm", "none"]
        + ["adapter.target_modules", '["query","key"]', "adapter.layers_to_transform", "0,1"]
        + ["training.precision", "bf16", "task.head_lr", "None", "adapter.init_bound", "-0.0"]
    )
    t = cfg.effective_training("rte")
    assert cfg.adapter.isometric is False and t.gradient_checkpointing is True
    assert t.lr == 1e-3 and t.epochs == 7 and t.max_grad_norm is None
    assert cfg.adapter.target_modules == ["query", "key"]
    assert cfg.adapter.layers_to_transform == [0, 1]
    assert t.precision == "bf16"
    # task.head_lr none: "inherit" -- and as a command-line value it clears the presets'.
    assert t.head_lr == cfg.training.head_lr


def test_negative_number_value_is_not_a_flag():
    cfg, _ = parse_cli(["adapter.init_bound", "-0", "training.label_smoothing", "0"])
    assert cfg.adapter.init_bound == 0.0


def test_unknown_key_suggests_closest():
    msg = _error(["training.lrr", "0.1"])
    assert msg.startswith("unknown key 'training.lrr'; did you mean 'training.lr'?")
    assert "valid training keys: training.batch_size" in msg
    msg = _error(["trainng.lr", "0.1"])
    assert "did you mean 'training.lr'" in msg and "section one of model, adapter" in msg
    msg = _error(["task.sst2.epoch", "3"])
    assert "did you mean 'task.sst2.epochs'" in msg


def test_adapter_key_of_another_adapter_is_explained():
    msg = _error(["--adapter_type", "gpart", "adapter.r", "8"])
    assert "unknown key 'adapter.r'" in msg
    assert "belongs to adapter lora, dora, unilora, vera, vblora" in msg
    assert "this run's adapter is 'gpart'" in msg
    assert "adapter.d" in msg  # valid keys listed


def test_task_key_errors():
    assert "'sst3' is not a glue task; did you mean 'sst2'" in _error(["task.sst3.lr", "1"])
    msg = _error(["--tasks", "sst2", "task.rte.lr", "1e-3"])
    assert "task 'rte' is not in this run (tasks: sst2)" in msg


def test_a_key_renamed_to_peft_s_name_is_one_line_naming_the_new_key():
    assert _error(["adapter.grouping", "balanced"]) == (
        "adapter.grouping was renamed adapter.grouping_strategy (peft's GPartConfig field)"
    )
    assert _error(["--adapter_type", "lora", "adapter.alpha", "16"]) == (
        "adapter.alpha was renamed adapter.lora_alpha (peft's LoraConfig field)"
    )


def test_bad_values():
    assert _error(["adapter.d", "many"]).startswith("adapter.d: expected an integer")
    assert _error(["adapter.isometric", "maybe"]).startswith(
        "adapter.isometric: expected a boolean"
    )
    msg = _error(["training.scheduler", "cosin"])
    assert "expected one of linear, cosine" in msg and "did you mean 'cosine'" in msg


def test_odd_number_of_tokens():
    msg = _error(["training.lr", "0.1", "training.epochs"])
    assert "`key value` pairs" in msg and "'training.epochs' has no value" in msg


def test_flag_after_overrides_is_refused():
    msg = _error(["training.lr", "0.1", "--seed", "3"])
    assert msg.startswith("flag --seed comes after the `key value` overrides")
    msg = _error(["training.lr", "0.1", "--print_config"])
    assert "flag --print_config comes after" in msg


def test_unknown_flag():
    msg = _error(["--adapter", "lora"])  # no abbreviations
    assert msg.startswith("unknown flag --adapter; did you mean '--adapter_type'?")
    msg = _error(["--lr", "0.1"])
    assert "did you mean the override `training.lr VALUE`?" in msg


def test_equals_syntax_is_explained():
    assert "write overrides as `key value`, e.g. `training.lr 0.1`" in _error(["training.lr=0.1"])


def test_duplicates_are_errors():
    assert "given twice" in _error(["training.lr", "1", "training.lr", "2"])
    assert "given both as --seed and as an override" in _error(["--seed", "1", "seed", "2"])


def test_flag_only_keys():
    assert "set it with --adapter_type" in _error(["adapter.type", "lora"])
    assert "set it with --model_size" in _error(["model.model_size", "large"])


def test_flag_value_errors_are_config_errors():
    msg = _error(["--adapter_type", "lorra"])
    assert "did you mean 'lora'" in msg and "choices: gpart, lora" in msg
    assert "seeds must be integers, got 'x'" in _error(["--seed", "x"])
    assert _error(["--tasks", "sst2,sst3"]).startswith(
        "--tasks: task 'sst3' is not a glue task; did you mean 'sst2'?"
    )


def test_registry_drives_adapter_type_choices():
    from gpart.configs import adapter_names

    action = next(a for a in build_parser()._actions if a.dest == "adapter_type")
    assert list(action.choices) == adapter_names()
    assert {"gpart", "lora", "dora", "unilora", "vera", "fourierft", "vblora"} <= set(
        action.choices
    )
    assert {"bitfit", "head", "full"} <= set(action.choices)


def test_runner_can_add_flags():
    parser = build_parser()
    parser.add_argument("--resume", action="store_true")
    cfg, flags = parse_cli(["--resume", "training.lr", "0.1"], parser=parser)
    assert flags.resume and cfg.training.lr == 0.1


def test_print_config_prints_resolved_json(capsys):
    ran = []
    rc = cli_main(lambda cfg, flags: ran.append(cfg), ["--print_config", "training.lr", "0.002"])
    assert rc == 0 and not ran  # printed, did not run
    out = json.loads(capsys.readouterr().out)
    assert out["training"]["lr"] == 0.002
    assert out["effective"]["sst2"]["epochs"] == 60
    assert out["sources"]["training.lr"] == "cli"
    assert cli_main(lambda cfg, flags: None, ["--print_config", "--seed", "1", "2", "3"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["seed"] == 1
    assert "printed for seed 1; seeds 2, 3 differ only in `seed`" in printed.err


def test_cli_main_runs_and_maps_config_errors_to_exit_2(capsys):
    seen = []
    assert cli_main(lambda cfg, flags: seen.append(cfg.training.lr), ["training.lr", "0.5"]) == 0
    assert seen == [0.5]
    with pytest.raises(SystemExit) as exc:
        cli_main(lambda cfg, flags: None, ["training.lrr", "0.5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown key 'training.lrr'") and err.count("\n") == 1

    def run(cfg, flags):
        raise ConfigError("data.data_dir: no such directory '/x'")

    with pytest.raises(SystemExit) as exc:
        cli_main(run, [])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: data.data_dir: no such directory '/x'\n"


def test_exit_on_config_error_as_decorator(capsys):
    @exit_on_config_error()
    def main():
        raise ConfigError("bad\nthing")

    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: bad thing\n"  # always one line


def test_several_tasks_and_seeds_stop_at_the_overrides():
    from gpart.configs.cli import configs_for_seeds

    cfg, flags = parse_cli(
        [
            "--tasks",
            "sst2",
            "rte",
            "--seed",
            "1",
            "2",
            "3",
            "adapter.d",
            "64",
            "training.lr",
            "1e-3",
        ]
    )
    assert cfg.tasks == ["sst2", "rte"] and flags.seeds == [1, 2, 3]
    assert cfg.adapter.d == 64 and cfg.training.lr == 1e-3
    per_seed = configs_for_seeds(flags)
    assert [c.seed for c in per_seed] == [1, 2, 3]
    assert [c.adapter.proj_seed for c in per_seed] == [1, 2, 3]  # follows each seed
    assert all(c.adapter.d == 64 for c in per_seed)
    # comma spelling and the singular alias mean the same
    cfg2, flags2 = parse_cli(["--task", "sst2,rte", "--seed", "1,2"])
    assert cfg2.tasks == ["sst2", "rte"] and flags2.seeds == [1, 2]


def test_default_tasks_are_the_papers_six():
    cfg, flags = parse_cli([])
    assert cfg.tasks == ["cola", "sst2", "mrpc", "qnli", "rte", "stsb"]
    assert flags.seeds == [cfg.seed]


def test_task_typo_is_reported_not_taken_for_an_override():
    assert _error(["--tasks", "sst2", "sts", "adapter.d", "64"]).startswith(
        "--tasks: task 'sts' is not a glue task; did you mean 'stsb'?"
    )


@pytest.mark.parametrize(
    "key, hint",
    [
        ("lr", "did you mean 'training.lr' or 'task.lr'?"),
        ("learning_rate", "did you mean 'training.lr'"),
        ("training.learning_rate", "did you mean 'training.lr'?"),
        ("num_train_epochs", "did you mean 'training.epochs'"),
        ("epochs", "did you mean 'training.epochs'"),
    ],
)
def test_bare_or_transformers_style_keys_point_at_ours(key, hint):
    with pytest.raises(ConfigError, match=re.escape(hint)):
        resolve_experiment(overrides={key: "1"})
