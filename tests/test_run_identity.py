"""Run names: one per sweep (shared by its tasks and seeds), a new one for any change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from glue_env import write_glue_data, write_tiny_model
from gpart.configs import parse_cli
from gpart.configs.cli import configs_for_seeds
from gpart.configs.legacy import IDENTITY_VERSION
from gpart.runners.identity import sweep_run_name


def _name(*argv: str, seed_index: int = 0, version: int = IDENTITY_VERSION) -> str:
    _, flags = parse_cli(list(argv))
    return sweep_run_name(configs_for_seeds(flags)[seed_index], version)


def test_tasks_and_seeds_of_one_sweep_share_the_name():
    base = _name("--tasks", "sst2", "--seed", "1")
    assert base.startswith("gpart_d23040_lr0.005_")
    assert _name("--tasks", "rte", "--seed", "1") == base
    assert _name("--tasks", "sst2", "rte", "--seed", "1", "2", seed_index=1) == base
    assert _name("--tasks", "sst2", "--data_dir", "/elsewhere", "--output_dir", "/x") == base


def test_any_hyperparameter_change_gives_a_new_name():
    base = _name("--tasks", "sst2")
    changed = {
        _name("--tasks", "sst2", "training.lr", "1e-3"),
        _name("--tasks", "sst2", "adapter.d", "1024"),
        _name("--tasks", "sst2", "task.sst2.epochs", "3"),
        _name("--tasks", "sst2", "adapter.proj_seed", "7"),  # fixed, no longer follows --seed
        _name("--tasks", "sst2", "--model_size", "large"),
        _name("--adapter_type", "lora", "--tasks", "sst2"),
    }
    assert base not in changed and len(changed) == 6


def test_the_name_shows_lr_only_when_every_task_runs_at_it():
    # LoRA's GLUE presets set the lr per task: training.lr is not what runs, so no lr.
    lora = _name("--adapter_type", "lora", "--tasks", "sst2")
    assert "_lr" not in lora
    assert _name("--adapter_type", "lora", "--tasks", "rte") == lora
    # A command-line training.lr or task.lr replaces every task's preset lr.
    assert "_lr0.001_" in _name("--adapter_type", "lora", "--tasks", "rte", "training.lr", "1e-3")
    assert "_lr0.0002_" in _name("--adapter_type", "lora", "--tasks", "rte", "task.lr", "2e-4")
    # One task's own lr: not run-wide.
    assert "_lr" not in _name("--tasks", "rte", "task.rte.lr", "2e-4")


# The GLUE recipe before the presets became the reference's (gradient clipping at 1.0,
# Trainer's schedule length and data order, the balanced 20 % carve-out): asked for by name,
# it still maps to the directories those runs wrote.
PREVIOUS_GLUE_RECIPE = (
    "training.max_grad_norm", "1.0", "training.schedule_steps", "exact",
    "training.data_order", "seeded", "data.selection_split", "balanced",
)  # fmt: skip
# The baselines' GLUE values before they became the reference's: every 1-D tensor decayed,
# no adapter dropout; VeRA at 5e-3 with a key following --seed and its projections unsaved.
PREVIOUS_GLUE_BASELINES = ("training.decay_vectors", "true")
PREVIOUS_GLUE_LORA = (*PREVIOUS_GLUE_BASELINES, "adapter.lora_dropout", "0")
PREVIOUS_GLUE_VERA = (
    *PREVIOUS_GLUE_BASELINES, "adapter.vera_dropout", "0",
    "training.lr", "5e-3", "adapter.projection_prng_key", "none",
    "adapter.save_projection", "false",
)  # fmt: skip


def test_names_are_stable_across_releases():
    # Existing run directories must keep being found (skip, resume, collect): a refactor
    # that changes what enters the hash, or how it is serialised, fails here. A preset that
    # changes what runs changes the name on purpose (a finished run of the old recipe is not
    # the new experiment); the old recipe, spelled out, keeps its old name. Version 1 (the
    # adapter keys before they became peft's field names) is computed as it always was;
    # version 2 names are pinned the same way below.
    assert _name("--tasks", "sst2", version=1) == "gpart_d23040_lr0.005_4cebe521"
    assert (
        _name("--tasks", "sst2", *PREVIOUS_GLUE_RECIPE, version=1)
        == "gpart_d23040_lr0.005_f110b47c"
    )
    lora = ("--adapter_type", "lora", "--tasks", "rte", "training.lr", "1e-3")
    old_lora = (*PREVIOUS_GLUE_RECIPE, *PREVIOUS_GLUE_LORA)
    assert _name(*lora, *old_lora, version=1) == "lora_r8_lr0.001_7d0a30b1"
    vera = ("--adapter_type", "vera", "--model_size", "large", "--tasks", "cola", "stsb")
    old_vera = (*PREVIOUS_GLUE_RECIPE, *PREVIOUS_GLUE_VERA)
    assert _name(*vera, "adapter.r", "4", *old_vera, version=1) == "vera_r4_lr0.005_481c2172"


# The vision recipe before its presets became the reference's: the stateless partition,
# this project's cuts, biases and norms undecayed, warmup rounded up, training on from the
# set-up's RNG state, two loader workers.
PREVIOUS_VISION_RECIPE = (
    "adapter.assignment_backend", "stateless", "data.selection_split", "balanced",
    "training.decay_biases_and_norms", "false", "training.schedule_steps", "exact",
    "training.reseed_trainer", "false", "training.num_workers", "2",
)  # fmt: skip


def _vision_name(*argv: str, version: int = IDENTITY_VERSION) -> str:
    _, flags = parse_cli(["--adapter_type", "gpart", *argv], domain="vision")
    return sweep_run_name(configs_for_seeds(flags)[0], version)


def test_version_2_names_are_stable():
    assert _name("--tasks", "sst2") == "gpart_d23040_lr0.005_ff3c9c3f"
    assert _name("--tasks", "sst2", *PREVIOUS_GLUE_RECIPE) == "gpart_d23040_lr0.005_a539e266"
    lora = ("--adapter_type", "lora", "--tasks", "rte", "training.lr", "1e-3")
    assert _name(*lora, *PREVIOUS_GLUE_RECIPE) == "lora_r8_lr0.001_0794e84d"
    # Uni-LoRA's theta_d_length shows as d, as it did; its version-1 name is the one its
    # preset had before it took the reference's dropout, seed and undecayed vectors.
    unilora = ("--adapter_type", "unilora", "--tasks", "rte")
    old_unilora = (*PREVIOUS_GLUE_BASELINES, "adapter.unilora_dropout", "0")
    assert _name(*unilora, *old_unilora, "adapter.proj_seed", "none", version=1) == (
        "unilora_d23040_r4_lr0.005_bb862710"
    )
    assert _name(*unilora) == "unilora_d23040_r4_lr0.005_a94dc188"
    assert _vision_name("--tasks", "cifar100") == "gpart_d72000_lr0.004_8b1fcc93"
    assert _math_name("--adapter_type", "gpart") == "gpart_d131072_lr0.0002_bd3a4358"


def test_the_previous_vision_recipe_keeps_its_hash():
    # Its runs were written as gpart_d72000_dc238297: the hash is the same; the name now
    # shows the lr, because no vision task preset sets an lr of its own any more (flowers102
    # runs at the script's defaults), so training.lr is what every task runs at.
    assert _vision_name("--tasks", "cifar100", version=1) == "gpart_d72000_lr0.004_28a955e8"
    old = _vision_name("--tasks", "cifar100", *PREVIOUS_VISION_RECIPE, version=1)
    assert old == "gpart_d72000_lr0.004_dc238297"


def test_fields_added_later_keep_old_names_at_their_default():
    base = _name("--tasks", "sst2")
    assert _name("--tasks", "sst2", "data.augment", "true") == base
    assert _name("--tasks", "sst2", "data.augment", "false") != base


def test_fields_added_later_rename_runs_only_when_changed():
    base = _name("--tasks", "sst2")
    assert _name("--tasks", "sst2", "adapter.partition_scope", "global") == base
    scoped = _name("--tasks", "sst2", "adapter.partition_scope", "transformer_block")
    fastfood = _name("--tasks", "sst2", "adapter.projection_type", "fastfood")
    assert len({base, scoped, fastfood}) == 3


def test_where_a_run_is_reported_never_renames_it():
    base = _name("--tasks", "sst2", "rte")
    for override in (
        ("training.report_to", "mlflow,wandb"),
        ("training.report_to", "none"),
        ("training.run_name", "my-sweep"),
        ("task.report_to", "trackio"),
        ("task.rte.run_name", "rte-only"),
    ):
        assert _name("--tasks", "sst2", "rte", *override) == base, override


# The math recipe before the presets became the reference's (the Alpaca prompt with the
# loss on the response, 1,000 rows held out, length-grouped batches, the Trainer re-seeding
# as it always did, and GPart's stateless partition following --seed): asked for by name,
# it keeps its old names.
PREVIOUS_MATH_RECIPE = (
    "data.heldout_samples", "1000", "data.prompt_template", "alpaca",
    "data.train_on_prompt", "false", "data.group_by_length", "true",
    "training.reseed_trainer", "false",
)  # fmt: skip
PREVIOUS_MATH_GPART = ("adapter.assignment_backend", "stateless", "adapter.proj_seed", "none")


def _math_name(*argv: str, version: int = IDENTITY_VERSION) -> str:
    _, flags = parse_cli(list(argv), domain="math")
    return sweep_run_name(configs_for_seeds(flags)[0], version)


def test_math_names_are_stable_across_releases():
    gpart = ("--adapter_type", "gpart")
    assert _math_name(*gpart, version=1) == "gpart_d131072_lr0.0002_835da577"
    previous = (*PREVIOUS_MATH_RECIPE, *PREVIOUS_MATH_GPART)
    assert _math_name(*gpart, *previous, version=1) == "gpart_d131072_lr0.0002_d56050bb"
    lora = ("--adapter_type", "lora", "--model_size", "qwen2.5-7b")
    # LoRA's micro-batches were GPart's 4 x 4 before they became the script's 2 x 8
    four_by_four = ("training.batch_size", "4", "training.grad_accum", "4")
    old_lora = (*PREVIOUS_MATH_RECIPE, *four_by_four)
    assert _math_name(*lora, *old_lora, version=1) == "lora_r4_lr0.0002_c79572ef"
    large = ("--adapter_type", "gpart", "--model_size", "llama-3.1-8b", "training.lr", "1e-3")
    assert _math_name(*large, *previous, version=1) == "gpart_d524288_lr0.001_9c5b90a4"


# Finished runs written under identity version 1 (tests/data/run_identity_v1/README.md says
# how): every place that looks a run directory up by name must still find them.
V1_FIXTURE = Path(__file__).parent / "data" / "run_identity_v1"
V1_FLAGS = ["--base_model", "tiny-roberta", "--data_dir", "data", "--output_dir", "logs",
            "--tasks", "rte"]  # fmt: skip
V1_OVERRIDES = ["training.max_steps", "2", "training.batch_size", "8",
                "training.max_seq_length", "32", "training.num_workers", "0",
                "training.logging_steps", "1"]  # fmt: skip
# Each fixture run's name and its command's adapter settings.
V1_RUNS = {
    "gpart": ("gpart_d64_lr0.005_bd71c4f0",
              ["adapter.d", "64", "adapter.grouping_strategy", "balanced", "adapter.gpart_dropout", "0.1"]),
    # (LoRA's preset took the reference's undecayed vectors since: that run's value, spelled)
    "lora": ("lora_r2_6bea4411",
             ["adapter.r", "2", "adapter.lora_alpha", "16", "adapter.lora_dropout", "0.05",
              *PREVIOUS_GLUE_BASELINES]),
}  # fmt: skip


def _v1_argv(adapter: str, *flags: str) -> list[str]:
    return [*V1_FLAGS, "--adapter_type", adapter, *flags, *V1_OVERRIDES, *V1_RUNS[adapter][1]]


@pytest.fixture
def v1_logs(tmp_path, monkeypatch):
    """The fixture's runs in ./logs, beside the data and the tiny model they were run on."""
    monkeypatch.chdir(tmp_path)
    write_glue_data(Path("data"), tasks=("rte",))
    write_tiny_model(Path("tiny-roberta"))
    shutil.copytree(V1_FIXTURE, "logs", ignore=shutil.ignore_patterns("README.md"))
    return tmp_path / "logs"


def _seed_dirs(logs: Path) -> set[Path]:
    return {p.parent for p in logs.rglob("config.json")}


def test_version_1_names_are_the_fixture_runs_names():
    for adapter, (name, _) in V1_RUNS.items():
        _, flags = parse_cli(_v1_argv(adapter))
        cfg = configs_for_seeds(flags)[0]
        assert sweep_run_name(cfg, 1) == name
        assert sweep_run_name(cfg) != name


def test_a_finished_version_1_run_is_skipped(v1_logs, capsys):
    from gpart.runners import glue as runner

    before = _seed_dirs(v1_logs)
    results = v1_logs / V1_RUNS["gpart"][0] / "rte" / "seed_42" / "results.json"
    text = results.read_text()
    assert runner.main(_v1_argv("gpart")) == 0
    assert "already finished" in capsys.readouterr().out
    assert _seed_dirs(v1_logs) == before and results.read_text() == text


def test_an_unfinished_version_1_run_is_resumed_in_its_directory(v1_logs):
    from gpart.runners import glue as runner

    before = _seed_dirs(v1_logs)
    run = v1_logs / V1_RUNS["lora"][0] / "rte" / "seed_42"
    (run / "results.json").unlink()
    assert runner.main(_v1_argv("lora", "--resume")) == 0
    assert _seed_dirs(v1_logs) == before
    assert json.loads((run / "results.json").read_text())["run_name"] == V1_RUNS["lora"][0]


def test_collect_reads_version_1_runs():
    from gpart.results import collect_results

    table = collect_results([V1_FIXTURE])
    assert {m.run_name for m in table.methods} == {name for name, _ in V1_RUNS.values()}


def test_a_version_1_config_json_loads_with_todays_keys():
    from gpart.configs import experiment_from_dict

    saved = json.loads(
        (V1_FIXTURE / V1_RUNS["gpart"][0] / "rte" / "seed_42" / "config.json").read_text()
    )["config"]
    assert saved["adapter"]["grouping"] == "balanced" and "dropout" in saved["adapter"]
    gpart = experiment_from_dict(saved)
    assert (gpart.adapter.grouping_strategy, gpart.adapter.gpart_dropout) == ("balanced", 0.1)
    assert gpart.adapter.assignment_backend == "stateless"
    assert gpart.adapter.projection_type == "partition"
    assert gpart.sources["adapter.grouping_strategy"] == "cli"
    saved = json.loads(
        (V1_FIXTURE / V1_RUNS["lora"][0] / "rte" / "seed_42" / "config.json").read_text()
    )["config"]
    lora = experiment_from_dict(saved)
    assert (lora.adapter.lora_alpha, lora.adapter.lora_dropout) == (16, 0.05)
