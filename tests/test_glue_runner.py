"""The GLUE runner end to end, offline: tiny checkpoints and datasets in a temp directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from glue_env import write_glue_data, write_tiny_model
from gpart.results import collect_results
from gpart.runners import glue as runner
from gpart.runners.glue import eval_main

SIX = ["cola", "sst2", "mrpc", "qnli", "rte", "stsb"]
FAST = [
    "training.epochs",
    "2",
    "task.epochs",
    "2",
    "training.batch_size",
    "16",
    "training.max_seq_length",
    "32",
    "training.num_workers",
    "0",
    "training.logging_steps",
    "1",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    return {
        "data": write_glue_data(root / "data", tasks=(*SIX, "mnli")),
        "roberta": write_tiny_model(root / "roberta", "roberta"),
        "bert": write_tiny_model(root / "bert", "bert"),
        "root": root,
    }


def _run(env, out, *args, model="roberta"):
    argv = [
        "--base_model",
        str(env[model]),
        "--data_dir",
        str(env["data"]),
        "--output_dir",
        str(out),
        *args,
    ]
    return runner.main(argv)


def _result_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("results.json"))


def _predict(run: Path, model_dir: Path, split_file: Path, task: str):
    """Predictions of the saved adapter, made outside the runner."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from gpart.configs import get_task

    spec = get_task("glue", task)
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=spec.num_labels, ignore_mismatched_sizes=True
    )
    model = PeftModel.from_pretrained(base, run / "adapter").eval()
    rows = [json.loads(line) for line in split_file.read_text().splitlines()]
    texts = [[r[c] for r in rows] for c in spec.text_columns]
    enc = tok(*texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits.numpy()
    labels = np.array([r["label"] for r in rows])
    preds = logits[:, 0] if spec.is_regression else logits.argmax(-1)
    return preds, labels


def test_six_tasks_with_gpart_and_lora_and_metrics_match_sklearn(env, tmp_path):
    out = tmp_path / "logs"
    assert _run(env, out, "--adapter_type", "gpart", "--tasks", *SIX, "adapter.d", "64", *FAST) == 0
    assert _run(env, out, "--adapter_type", "lora", "--tasks", *SIX, *FAST) == 0
    runs = _result_dirs(out)
    assert len(runs) == 12
    names = {r.parent.parent.name for r in runs}
    assert len(names) == 2 and any(n.startswith("gpart_d64_") for n in names)
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        assert {"task", "primary_metric", "test", "selection", "params", "wall_time_s"} <= set(res)
        assert res["primary_metric"] in res["test"]
        assert (run / "config.json").exists() and (run / "metrics.jsonl").exists()
        assert (run / "adapter" / "adapter_model.safetensors").exists()
        if res["adapter_type"] == "gpart":
            assert res["params"]["trainable_adapter"] == 64
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["config"]["tasks"] == [res["task"]] and cfg["provenance"]["peft"]
        assert "train.jsonl" in cfg["data_fingerprint"]["files"]  # what it trained on

    gpart_runs = {r.parts[-2]: r for r in runs if r.parent.parent.name.startswith("gpart")}
    for task, checks in {
        "cola": {"mcc": matthews_corrcoef},
        "mrpc": {"accuracy": accuracy_score, "f1": f1_score},
        "stsb": {
            "pearson": lambda y, p: pearsonr(p, y)[0],
            "spearman": lambda y, p: spearmanr(p, y)[0],
        },
    }.items():
        run = gpart_runs[task]
        preds, labels = _predict(run, env["roberta"], env["data"] / task / "validation.jsonl", task)
        test = json.loads((run / "results.json").read_text())["test"]
        for name, fn in checks.items():
            assert test[name] == pytest.approx(fn(labels, preds), abs=1e-5), (task, name)


def test_eval_script_reproduces_the_test_metric_for_several_adapter_types(env, tmp_path):
    out = tmp_path / "logs"
    for adapter in ("gpart", "bitfit", "head", "full"):
        extra = ["adapter.d", "64"] if adapter == "gpart" else []
        assert _run(env, out, "--adapter_type", adapter, "--tasks", "mrpc", *extra, *FAST) == 0
    runs = _result_dirs(out)
    assert len(runs) == 4
    assert eval_main([str(out)]) == 0
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        ev = json.loads((run / "eval_best_test.json").read_text())
        assert ev["splits"]["validation"]["accuracy"] == pytest.approx(
            res["test"]["accuracy"], abs=1e-6
        )
        assert ev["splits"]["validation"]["f1"] == pytest.approx(res["test"]["f1"], abs=1e-6)
    before = (runs[0] / "results.json").read_text()
    assert eval_main([str(runs[0]), "--which", "last", "--split", "train"]) == 0
    last = json.loads((runs[0] / "eval_last_train.json").read_text())
    last_step = json.loads(before)["selection"]["last_step"]
    assert Path(last["weights"]).name == f"checkpoint-{last_step}"  # the last model, kept
    assert "model_preparation_time" not in last["splits"]["train"]
    assert (runs[0] / "results.json").read_text() == before
    assert not list(runs[0].glob(".eval*"))  # evaluation leaves nothing but its json
    # A run whose last checkpoint is gone is refused, not silently given the best one.
    shutil.rmtree(runs[0] / f"checkpoint-{last_step}")
    assert eval_main([str(runs[0]), "--which", "last"]) == 1


def test_bert_model_and_mnli_matched_mismatched(env, tmp_path):
    out = tmp_path / "logs"
    assert (
        _run(
            env,
            out,
            "--adapter_type",
            "gpart",
            "--tasks",
            "mnli",
            "adapter.d",
            "64",
            *FAST,
            model="bert",
        )
        == 0
    )
    (run,) = _result_dirs(out)
    test = json.loads((run / "results.json").read_text())["test"]
    assert set(test) == {"accuracy", "accuracy_mm"}


def test_collect_two_seeds_mean_and_std(env, tmp_path):
    out = tmp_path / "logs"
    assert (
        _run(
            env,
            out,
            "--adapter_type",
            "gpart",
            "--tasks",
            "sst2",
            "rte",
            "--seed",
            "1",
            "2",
            "adapter.d",
            "64",
            *FAST,
        )
        == 0
    )
    runs = _result_dirs(out)
    assert len(runs) == 4 and len({r.parent.parent.name for r in runs}) == 1  # one sweep, one name
    table = collect_results([out])
    md = table.to_markdown()
    scores = [
        json.loads((r / "results.json").read_text())["test"]["accuracy"] * 100
        for r in runs
        if r.parts[-2] == "sst2"
    ]
    mean, std = np.mean(scores), np.std(scores, ddof=1)
    assert f"{mean:.1f} ± {std:.1f}" in md
    import sys
    from subprocess import run as sh

    proc = sh(
        [sys.executable, "src/scripts/glue/collect_results_glue.py", str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 0 and f"{mean:.1f} ± {std:.1f}" in proc.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tasks", "sst3"], "not a glue task; did you mean 'sst2'"),
        (["--tasks", "sst2", "adapter.dd", "3"], "adapter.dd"),
        (["--tasks", "sst2", "training.lr", "fast"], "training.lr"),
    ],
)
def test_bad_input_exits_2_and_leaves_nothing(env, tmp_path, capsys, args, message):
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exit_:
        _run(env, out, "--adapter_type", "gpart", *args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_missing_data_dir_exits_2(env, tmp_path, capsys):
    out = tmp_path / "logs"
    argv = [
        "--adapter_type",
        "gpart",
        "--base_model",
        str(env["roberta"]),
        "--data_dir",
        str(tmp_path / "nope"),
        "--output_dir",
        str(out),
        "--tasks",
        "sst2",
    ]
    with pytest.raises(SystemExit) as exit_:
        runner.main(argv)
    assert exit_.value.code == 2 and "--data_dir" in capsys.readouterr().err
    assert not out.exists()


def test_a_failing_task_does_not_stop_the_others(env, tmp_path, capsys):
    data = write_glue_data(tmp_path / "data", tasks=("sst2",))
    (data / "rte").mkdir()  # rte's files lack its columns: that task fails, sst2 runs
    for split in ("train", "validation"):
        (data / "rte" / f"{split}.csv").write_text("text,label\nhello,0\n")
    out = tmp_path / "logs"
    argv = [
        "--adapter_type",
        "gpart",
        "--base_model",
        str(env["roberta"]),
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--tasks",
        "rte",
        "sst2",
        "adapter.d",
        "64",
        *FAST,
    ]
    assert runner.main(argv) == 1
    err = capsys.readouterr().err
    assert "rte" in err and "1 run(s) failed" in err
    assert [r.parts[-2] for r in _result_dirs(out)] == ["sst2"]
    assert not list(out.glob("*/rte"))  # nothing half-written for the failed task


def test_a_missing_task_folder_is_named_before_anything_runs(env, tmp_path, capsys):
    data = write_glue_data(tmp_path / "data", tasks=("sst2",))
    out = tmp_path / "logs"
    argv = ["--adapter_type", "gpart", "--base_model", str(env["roberta"]), "--data_dir",
            str(data), "--output_dir", str(out), "--tasks", "sst2", "rte", *FAST]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no folder for rte" in err and "it holds: sst2" in err
    assert not out.exists()


def test_bf16_trains_on_a_cpu_machine(env, tmp_path):
    out = tmp_path / "logs"
    args = ["--adapter_type", "gpart", "--tasks", "rte", "adapter.d", "64", *FAST]
    assert _run(env, out, *args, "training.precision", "bf16") == 0
    (run,) = _result_dirs(out)
    assert (
        json.loads((run / "config.json").read_text())["config"]["training"]["precision"] == "bf16"
    )


def test_two_process_ddp_run_writes_each_file_once(env, tmp_path):
    # torchrun on CPU (gloo): both processes train every task together; only the main one
    # creates directories, writes files and prints. The preset's data order is drawn from one
    # process's global RNG (refused under DDP), so the run takes Trainer's seeded order.
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "logs"
    script = Path(__file__).parents[1] / "src/scripts/glue/finetune_roberta_glue.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port), str(script),
           "--adapter_type", "gpart", "--base_model", str(env["roberta"]), "--data_dir",
           str(env["data"]), "--output_dir", str(out), "--tasks", "rte", "stsb",
           "adapter.d", "64", "training.data_order", "seeded", *FAST]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _result_dirs(out)
    assert [r.parts[-2] for r in runs] == ["rte", "stsb"]
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        assert res["world_size"] == 2
        assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert proc.stdout.count("pearson = ") == 1 and proc.stdout.count("accuracy = ") == 1


def test_adapter_type_is_required_and_empty_collect_paths_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        runner.main(["--tasks", "rte"])
    assert exc.value.code == 2
    assert "required: --adapter_type (choices: gpart, lora" in capsys.readouterr().err
    from gpart.results import ResultsError

    with pytest.raises(ResultsError, match="empty path"):
        collect_results([""])


def test_command_line_values_reach_the_optimizer(env, tmp_path, monkeypatch):
    # What the user typed is what ran: the CLI lr beats the GPart task preset's, and a
    # per-task head_lr and batch size reach the Trainer.
    from gpart.training.trainer import GroupedTrainer

    seen = {}
    original = GroupedTrainer.create_optimizer

    def spy(self, *args, **kwargs):
        opt = original(self, *args, **kwargs)
        seen["lr"] = {g["name"]: g["lr"] for g in opt.param_groups}
        seen["batch_size"] = self.args.per_device_train_batch_size
        return opt

    monkeypatch.setattr(GroupedTrainer, "create_optimizer", spy)
    args = ["--adapter_type", "gpart", "--tasks", "rte", "adapter.d", "64", *FAST]
    cli = ["training.lr", "0.001", "task.rte.head_lr", "0.003", "task.rte.batch_size", "8"]
    assert _run(env, tmp_path / "logs", *args, *cli) == 0
    assert seen["lr"]["adapter"] == 0.001 and seen["lr"]["head"] == 0.003
    assert seen["batch_size"] == 8
