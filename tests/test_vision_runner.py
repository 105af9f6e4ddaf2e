"""The vision runner end to end, offline: a tiny ViT and tiny image folders in a temp dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from gpart.results import collect_results
from gpart.runners import vision as runner
from training_probes import with_callback
from vision_env import write_image_folder, write_tiny_vit

FAST = ["training.epochs", "2", "training.batch_size", "8", "training.grad_accum", "1",
        "training.num_workers", "0", "training.logging_steps", "1", "data.image_size", "32",
        "training.precision", "fp32"]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    data = root / "data"
    write_image_folder(data / "cifar10")  # no validation/: a seeded 10 % of train selects
    write_image_folder(data / "eurosat", sizes=(("train", 4), ("validation", 2), ("test", 2)))
    return {"data": data, "vit": write_tiny_vit(root / "vit"), "root": root}


def _run(env, out, *args):
    argv = ["--base_model", str(env["vit"]), "--data_dir", str(env["data"]),
            "--output_dir", str(out), *args]  # fmt: skip
    return runner.main(argv)


def _runs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("results.json"))


def test_gpart_and_a_probe_on_two_datasets_two_seeds_then_eval_and_collect(env, tmp_path):
    out = tmp_path / "logs"
    args = ["--tasks", "cifar10", "eurosat", "--seed", "1", "2", *FAST]
    assert _run(env, out, "--adapter_type", "gpart", *args, "adapter.d", "256") == 0
    assert _run(env, out, "--adapter_type", "head", *args) == 0
    runs = _runs(out)
    assert len(runs) == 8
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        assert res["primary_metric"] == "accuracy" and 0 <= res["test"]["accuracy"] <= 1
        sel = res["selection"]
        if res["task"] == "eurosat":
            assert sel["source"] == "validation" and sel["size"] == 20
        else:
            assert sel["source"] == "train" and sel["size"] == 4 and sel["train_size"] == 36
        if res["adapter_type"] == "gpart":
            assert res["params"]["trainable_adapter"] == 256
            saved = json.loads((run / "adapter" / "adapter_config.json").read_text())
            assert saved["target_modules"] and set(saved["target_modules"]) <= {
                "query", "value", "q_proj", "v_proj"}  # fmt: skip
        assert res["params"]["trainable_head"] == 32 * 10 + 10
    # Re-evaluation in a fresh model reproduces each run's test accuracy.
    assert runner.eval_main([str(out)]) == 0
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        ev = json.loads((run / "eval_best_test.json").read_text())
        assert ev["splits"]["test"]["accuracy"] == pytest.approx(res["test"]["accuracy"])
    table = collect_results([out])
    assert {m.adapter_type for m in table.methods} == {"gpart", "head"}
    assert all(cell.n == 2 for m in table.methods for cell in m.tasks.values())
    assert "±" in table.to_markdown()
    # The collect script: one table per backbone size, the datasets' names as columns.
    script = Path(__file__).parents[1] / "src/scripts/vision/collect_results_ViT.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), "--csv", str(tmp_path / "t.csv")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "### base"
    assert lines[2] == "| Method | Params | Seeds | CIFAR-10 | EuroSAT | Avg. |"
    assert (tmp_path / "t.csv").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tasks", "cifar11"], "not a vision task; did you mean 'cifar10'"),
        (["--tasks", "flowers102"], "no folder for flowers102"),
    ],
)
def test_bad_input_exits_2_and_leaves_nothing(env, tmp_path, capsys, args, message):
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exc:
        _run(env, out, "--adapter_type", "gpart", *args, *FAST)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_corrupt_image_is_named_before_training(env, tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data / "cifar10")
    bad = data / "cifar10" / "train" / "class_03" / "1.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exc:
        runner.main(["--adapter_type", "gpart", "--base_model", str(env["vit"]), "--data_dir",
                     str(data), "--output_dir", str(out), "--tasks", "cifar10", *FAST])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a readable image" in err and not out.exists()


def test_classes_must_agree_across_splits(tmp_path):
    from gpart.data.loading import DataError
    from gpart.data.vision import load_vision_raw

    data = tmp_path / "data"
    write_image_folder(data / "cifar10")
    (data / "cifar10" / "test" / "class_09").rename(data / "cifar10" / "test" / "class_99")
    with pytest.raises(DataError, match=r"missing \['class_09'\].*not in train \['class_99'\]"):
        load_vision_raw("cifar10", data)


def test_profile_data_times_the_loader_and_trains_nothing(env, tmp_path, capsys):
    out = tmp_path / "logs"
    assert _run(env, out, "--adapter_type", "gpart", "--tasks", "cifar10",
                "--profile_data", "2", *FAST) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "cifar10: loader" in printed and "images/s with 0 worker(s), batch 8" in printed
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        _run(env, out, "--adapter_type", "gpart", "--profile_data", "-1")
    assert exc.value.code == 2


def test_the_reference_spelling_and_dataset_flag_are_accepted():
    from gpart.configs import parse_cli

    cfg, _ = parse_cli(["--dataset", "standfordcars"], domain="vision")
    assert cfg.tasks == ["stanfordcars"]


class _CrashAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise RuntimeError("simulated crash")


def test_an_interrupted_vision_run_resumes(env, tmp_path, monkeypatch, capsys):
    from gpart.runners import core

    build = core.build_trainer

    out = tmp_path / "logs"
    args = ["--adapter_type", "gpart", "--tasks", "eurosat", *FAST, "adapter.d", "256"]
    monkeypatch.setattr(core, "build_trainer", with_callback(build, _CrashAfterFirstSave()))
    assert _run(env, out, *args) == 1
    monkeypatch.setattr(core, "build_trainer", build)
    assert _run(env, out, "--resume", *args) == 0
    (run,) = _runs(out)
    res = json.loads((run / "results.json").read_text())
    assert res["resumed_from"].startswith("checkpoint-") and res["selection"]["last_step"] == 10


def test_the_same_command_gives_the_same_run_and_a_resumed_one_ends_the_same(
    env, tmp_path, monkeypatch
):
    # The preset's augmentation draws come from the seeded global RNG in the training
    # process (training.reseed_trainer, no workers): reruns repeat them, and a run cut after
    # its first epoch and resumed draws the second epoch's as the uncut one does.
    from safetensors.torch import load_file

    from gpart.runners import core

    args = ["--adapter_type", "gpart", "--tasks", "eurosat", *FAST, "adapter.d", "256"]
    for name in ("a", "b"):
        assert _run(env, tmp_path / name, *args) == 0
    build = core.build_trainer

    monkeypatch.setattr(core, "build_trainer", with_callback(build, _CrashAfterFirstSave()))
    assert _run(env, tmp_path / "cut", *args) == 1
    monkeypatch.setattr(core, "build_trainer", build)
    assert _run(env, tmp_path / "cut", "--resume", *args) == 0
    adapters = {
        name: load_file(_runs(tmp_path / name)[0] / "adapter" / "adapter_model.safetensors")
        for name in ("a", "b", "cut")
    }
    assert any("gpart_theta" in key for key in adapters["a"])
    for name in ("b", "cut"):
        assert adapters[name].keys() == adapters["a"].keys()
        for key, value in adapters["a"].items():
            assert torch.equal(adapters[name][key], value), (name, key)
