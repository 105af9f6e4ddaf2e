"""The shared run life cycle (`gpart.runners.core`) with a fake domain: no GLUE, no tokenizer.

A domain only supplies data, model, collator and metrics; everything else -- the sweep
that keeps going past a failing task, skip / --force / --resume, DDP-safe writes, the files
of a run -- is the core's and is tested here once. GLUE's end-to-end tests are in
test_glue_runner.py.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from torch import nn
from transformers import TrainerCallback, default_data_collator

from gpart.configs import get_task
from gpart.data.loading import DataError, Splits
from gpart.metrics import accuracy
from gpart.runners import core
from gpart.runners.cli import build_runner_parser, cli_main


class TinyClassifier(nn.Module):
    """A backbone and a head, named the way `gpart.heads` tells them apart."""

    base_model_prefix = "body"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 8)
        self.classifier = nn.Linear(8, 2)

    def forward(self, features, labels=None):
        logits = self.classifier(torch.tanh(self.body(features)))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def _rows(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return Dataset.from_dict({"features": x.tolist(), "labels": (x[:, 0] > 0).astype(int)})


class FakeDomain(core.Domain):
    """Separable 4-d points; `fail` maps a task to the exception its data loading raises."""

    name = "glue"  # borrows GLUE's task names and presets; nothing else of GLUE

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.fail = fail or {}

    def load_splits(self, cfg, task):
        if task in self.fail:
            raise self.fail[task]
        best = cfg.training.model_selection == "best"
        return Splits(
            task=get_task("glue", task),
            train=_rows(32, cfg.seed),
            selection=_rows(16, 100) if best else None,
            test={"validation": _rows(24, 200)},
            info={"strategy": cfg.training.model_selection, "size": 16 if best else 0},
        )

    def load_model(self, cfg, task):
        return None, TinyClassifier()

    def prepare_dataset(self, dataset, task, processor, cfg):
        return dataset

    def data_collator(self, processor):
        return default_data_collator

    def compute_metrics(self, task):
        def compute(pred):
            return {"accuracy": accuracy(np.argmax(pred.predictions, -1), pred.label_ids)}

        return compute


FAST = ["training.epochs", "2", "task.epochs", "2", "training.batch_size", "8",
        "training.lr", "0.05", "training.num_workers", "0", "training.logging_steps", "1"]  # fmt: skip


def _main(domain, out: Path, *args: str) -> int:
    parser = build_runner_parser("glue", prog="fake", description="fake domain")
    argv = ["--adapter_type", "full", "--output_dir", str(out), *args, *FAST]
    return cli_main(functools.partial(core.run_sweep, domain), argv, domain="glue", parser=parser)


def _runs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("results.json"))


def test_a_run_writes_its_files_and_the_sweep_survives_failing_tasks(tmp_path, capsys):
    fake = FakeDomain({"rte": DataError("rte: bad columns"), "cola": RuntimeError("boom")})
    out = tmp_path / "logs"
    assert _main(fake, out, "--tasks", "cola", "sst2", "rte") == 1
    err = capsys.readouterr().err
    assert "error: rte (seed 42): rte: bad columns" in err  # a data error: one line
    assert "RuntimeError: boom" in err and "cola (seed 42) failed (traceback above)" in err
    assert "2 run(s) failed: cola (seed 42), rte (seed 42)" in err
    (run,) = _runs(out)
    assert run.parts[-2:] == ("sst2", "seed_42")
    assert not list(out.glob("*/rte")) and not list(out.glob("*/cola"))  # nothing half-written
    res = json.loads((run / "results.json").read_text())
    assert res["task"] == "sst2" and res["primary_metric"] == "accuracy"
    assert 0.0 <= res["test"]["accuracy"] <= 1.0
    assert res["selection"]["metric"] == "accuracy" and res["selection"]["last_step"] == 8
    assert res["params"]["trainable_head"] == 8 * 2 + 2  # the head, told from the body
    assert res["params"]["trainable_adapter"] == 4 * 8 + 8
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["tasks"] == ["sst2"] and saved["provenance"]["torch"]
    assert (run / "adapter" / "trainable.safetensors").exists()
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [("eval_accuracy" in e, "test_accuracy" in e) for e in evals] == [
        (True, False),
        (True, False),
        (False, True),
    ]


def test_finished_runs_are_skipped_and_force_starts_over(tmp_path, capsys):
    fake, out = FakeDomain(), tmp_path / "logs"
    assert _main(fake, out, "--tasks", "sst2") == 0
    (run,) = _runs(out)
    before = (run / "results.json").read_text()
    capsys.readouterr()
    assert _main(fake, out, "--tasks", "sst2") == 0
    assert "already finished" in capsys.readouterr().out
    assert (run / "results.json").read_text() == before
    (run / "stray.txt").write_text("left by an older run")
    assert _main(fake, out, "--tasks", "sst2", "--force") == 0
    assert not (run / "stray.txt").exists()  # the directory was replaced, not patched
    assert (run / "results.json").read_text() != before  # a new wall time at least


class _Crash(Exception):
    pass


def test_an_interrupted_run_is_refused_until_resumed(tmp_path, monkeypatch, capsys):
    fake, out = FakeDomain(), tmp_path / "logs"
    build = core.build_trainer

    class CrashAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise _Crash("simulated crash")

    def crashing(*a, **k):
        trainer = build(*a, **k)
        trainer.add_callback(CrashAfterFirstSave())
        return trainer

    monkeypatch.setattr(core, "build_trainer", crashing)
    assert _main(fake, out, "--tasks", "rte") == 1
    (seed_dir,) = list(out.glob("*/rte/seed_*"))
    assert not (seed_dir / "results.json").exists() and list(seed_dir.glob("checkpoint-*"))
    monkeypatch.setattr(core, "build_trainer", build)

    capsys.readouterr()
    assert _main(fake, out, "--tasks", "rte") == 1
    assert "unfinished run: pass --resume" in capsys.readouterr().err
    assert _main(fake, out, "--tasks", "rte", "--resume") == 0
    res = json.loads((seed_dir / "results.json").read_text())
    assert res["resumed_from"] == "checkpoint-4" and res["selection"]["last_step"] == 8


class _OtherProcess:
    """`accelerate.PartialState` as a non-main rank of a 2-process run sees it."""

    barriers = 0

    def __init__(self) -> None:
        self.is_main_process = False
        self.num_processes = 2

    def wait_for_everyone(self) -> None:
        type(self).barriers += 1


def test_only_the_main_process_writes_or_prints(tmp_path, monkeypatch, capsys):
    import accelerate

    monkeypatch.setattr(accelerate, "PartialState", _OtherProcess)
    out = tmp_path / "logs"
    # one of several processes: the GLUE preset's reference data order is one process's
    assert _main(FakeDomain(), out, "--tasks", "sst2", "training.data_order", "seeded") == 0
    # The directory holds what Trainer writes by its own rank logic (checkpoints,
    # metrics.jsonl through its process-zero callback), none of the core's files.
    (run,) = list(out.glob("*/sst2/seed_42"))
    for name in ("config.json", "results.json", "adapter"):
        assert not (run / name).exists(), name
    assert "accuracy =" not in capsys.readouterr().out
    # Before deciding, after the config is written, and before the next run starts.
    assert _OtherProcess.barriers == 3


def test_a_missing_data_folder_is_named_before_anything_runs(tmp_path, capsys):
    (tmp_path / "data" / "sst2").mkdir(parents=True)
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exc:
        _main(FakeDomain(), out, "--tasks", "sst2", "rte", "--data_dir", str(tmp_path / "data"))
    assert exc.value.code == 2
    assert "no folder for rte" in capsys.readouterr().err and not out.exists()


def test_the_default_test_metrics_take_the_one_reported_split():
    domain = core.Domain()
    assert domain.test_metrics("rte", {"validation": {"accuracy": 0.5}}) == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="several test splits"):
        domain.test_metrics("mnli", {"a": {}, "b": {}})


def _data(root: Path, *tasks: str) -> Path:
    """Local data folders the fake domain fingerprints (it trains on its own points)."""
    for task in tasks:
        (root / task).mkdir(parents=True, exist_ok=True)
        (root / task / "train.csv").write_text("sentence,label\nfine,1\nawful,0\n")
        (root / task / "validation.csv").write_text("sentence,label\ngood,1\n")
    return root


def test_a_finished_run_on_other_data_is_refused_until_forced(tmp_path, capsys):
    data, out = _data(tmp_path / "data", "sst2", "rte"), tmp_path / "logs"
    args = ("--tasks", "sst2", "rte", "--data_dir", str(data))
    assert _main(FakeDomain(), out, *args) == 0
    runs = _runs(out)
    rte = next(r for r in runs if r.parts[-2] == "rte")
    saved = {r: (r / "results.json").read_text() for r in runs}
    recorded = json.loads((rte / "config.json").read_text())["data_fingerprint"]
    assert recorded["kind"] == "local" and set(recorded["files"]) == {"train.csv", "validation.csv"}

    # Moved, same content: the same data, skipped.
    moved = data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert _main(FakeDomain(), out, "--tasks", "sst2", "rte", "--data_dir", str(moved)) == 0
    assert capsys.readouterr().out.count("already finished") == 2

    # One byte changed in one csv: refused before anything runs, nothing touched.
    csv = moved / "rte" / "train.csv"
    csv.write_text(csv.read_text().replace("fine,1", "fine,0"))
    with pytest.raises(SystemExit) as exc:
        _main(FakeDomain(), out, "--tasks", "sst2", "rte", "--data_dir", str(moved))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rte (seed 42)" in err and "sst2" not in err
    assert "train.csv changed (same size, other content)" in err
    assert "--force" in err and "--output_dir" in err
    assert {r: (r / "results.json").read_text() for r in runs} == saved

    # --force re-runs on the new data and records it; the next run skips again.
    assert _main(FakeDomain(), out, "--tasks", "rte", "--data_dir", str(moved), "--force") == 0
    new = json.loads((rte / "config.json").read_text())["data_fingerprint"]
    assert new["files"]["train.csv"] != recorded["files"]["train.csv"]
    digest = json.loads((rte / "results.json").read_text())["data_fingerprint"]
    assert digest != json.loads(saved[rte])["data_fingerprint"]
    capsys.readouterr()
    assert _main(FakeDomain(), out, "--tasks", "rte", "--data_dir", str(moved)) == 0
    assert "already finished" in capsys.readouterr().out


def test_an_unfinished_run_on_other_data_is_not_resumed(tmp_path, capsys):
    data, out = _data(tmp_path / "data", "rte"), tmp_path / "logs"
    assert _main(FakeDomain(), out, "--tasks", "rte", "--data_dir", str(data)) == 0
    (run,) = _runs(out)
    (run / "results.json").unlink()  # as if it had crashed after writing config.json
    (data / "rte" / "extra.csv").write_text("sentence,label\n")
    with pytest.raises(SystemExit) as exc:
        _main(FakeDomain(), out, "--tasks", "rte", "--data_dir", str(data), "--resume")
    assert exc.value.code == 2 and "extra.csv is new" in capsys.readouterr().err


def test_a_base_model_that_cannot_load_is_one_line(tmp_path):
    from transformers import AutoTokenizer

    from gpart.configs import ConfigError, resolve_experiment
    from gpart.runners.common import load_pretrained

    cfg = resolve_experiment(overrides={"model.base_model": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"--base_model: cannot load a tokenizer from .*nope"):
        load_pretrained(cfg, AutoTokenizer, "a tokenizer")


def test_the_data_is_fingerprinted_once_per_task_not_per_seed(tmp_path):
    calls = []

    class Counting(FakeDomain):
        def data_fingerprint(self, cfg, task):
            calls.append(task)
            return super().data_fingerprint(cfg, task)

    assert _main(Counting(), tmp_path / "logs", "--tasks", "sst2", "--seed", "1", "2") == 0
    assert calls == ["sst2"]


def test_training_torch_compile_reaches_the_trainer(tmp_path):
    # Trainer's own switch, under its own name: the run trains the compiled model.
    assert _main(FakeDomain(), tmp_path, "--tasks", "rte", "training.torch_compile", "true") == 0
    (run,) = _runs(tmp_path)
    saved = sorted(run.rglob("training_args.bin"))
    assert saved, "no checkpoint wrote its TrainingArguments"
    args = torch.load(saved[-1], weights_only=False)
    assert args.torch_compile is True
    assert json.loads((run / "results.json").read_text())["test"]


def test_training_deterministic_reaches_the_trainer_and_the_run_repeats(tmp_path, monkeypatch):
    # Trainer's full_determinism switches torch to deterministic kernels process-wide; the
    # test puts the switch back for the tests after it.
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""))
    before = torch.are_deterministic_algorithms_enabled()
    try:
        for out in ("a", "b"):
            args = ("--tasks", "rte", "training.deterministic", "true")
            assert _main(FakeDomain(), tmp_path / out, *args) == 0
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)
    a, b = (_runs(tmp_path / out)[0] for out in ("a", "b"))
    saved = sorted(a.rglob("training_args.bin"))
    assert torch.load(saved[-1], weights_only=False).full_determinism is True
    first, second = (load_file(run / "adapter" / "trainable.safetensors") for run in (a, b))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
