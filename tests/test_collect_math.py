"""``collect_results_math.py``: training runs x evaluation datasets (accuracy from
``<run>/eval/<dataset>/results.json``), on the shared collection library."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

from gpart.results import build_results, find_results_files, run_dir, write_json_atomic

SCRIPT = (
    Path(__file__).resolve().parents[1] / "src" / "scripts" / "math" / "collect_results_math.py"
)

# run -> seed -> (held-out loss, {dataset: accuracy}); lora seed 0 was never run on MATH
RUNS = {
    "gpart_d131072_lr0.0002_1a2b3c4d": ("gpart", 131072, {
        0: (0.412, {"gsm8k": 0.40, "math": 0.10}),
        1: (0.418, {"gsm8k": 0.44, "math": 0.12}),
    }),
    "lora_r4_lr0.0002_5e6f7a8b": ("lora", 540672, {
        0: (0.405, {"gsm8k": 0.46}),
    }),
}  # fmt: skip


def write_math_runs(root: Path, runs=RUNS, size="qwen2.5-0.5b", total=1319) -> list[Path]:
    """Run directories as the math runner lays them out (``results.json``), with the
    evaluation layout ``eval/<dataset>/results.json`` beside it."""
    dirs = []
    for name, (adapter, params, seeds) in runs.items():
        for seed, (loss, accs) in seeds.items():
            out = run_dir(root, name, "metamathqa", seed)
            record = build_results(
                run_name=name, adapter_type=adapter, task="metamathqa", seed=seed,
                primary_metric="loss", test={"loss": loss},
                selection={"strategy": "last", "size": 0},
                params={"trainable_adapter": params, "trainable_head": 0},
                wall_time_s=100.0, model_size=size, base_model="Qwen/Qwen2.5-0.5B",
            )  # fmt: skip
            write_json_atomic(out / "results.json", record)
            for dataset, acc in accs.items():
                n = total if dataset == "gsm8k" else 5000
                write_json_atomic(
                    out / "eval" / dataset / "results.json",
                    {"accuracy": acc, "total": n, "correct": round(acc * n), "seconds": 60.0},
                )
            dirs.append(out)
    return dirs


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("collect_results_math", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_table_of_accuracy_by_dataset_with_the_held_out_loss(tmp_path, cli, capsys):
    write_math_runs(tmp_path / "logs")
    tex, table_csv = tmp_path / "math.tex", tmp_path / "math.csv"
    assert cli([str(tmp_path / "logs"), "--latex", str(tex), "--csv", str(table_csv)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "### qwen2.5-0.5b"
    assert lines[2] == "| Method | Params | Seeds | GSM8K | MATH | Held-out loss |"
    gsm = f"{np.mean([40, 44]):.1f} ± {np.std([40, 44], ddof=1):.1f}"
    assert f"| gpart | 131.1K | 2 | {gsm} | 11.0 ± 1.4 | 0.415 ± 0.004 |" in lines
    assert "| lora | 540.7K | 1 | 46.0 | — | 0.405 |" in lines  # no MATH eval: empty cell
    assert "warning: lora: no results for ['math']" in err and "Avg" not in out
    rows = list(csv.DictReader(io.StringIO(table_csv.read_text())))
    assert [r["method"] for r in rows] == ["gpart", "lora"] and "average" not in rows[0]
    assert float(rows[0]["gsm8k_mean"]) == pytest.approx(42.0)
    assert rows[1]["math_mean"] == "" and rows[1]["math_n"] == "0"
    assert float(rows[0]["metamathqa_mean"]) == pytest.approx(0.415)
    text = tex.read_text()
    assert "Held-out loss as is" in text and "$42.0_{\\pm 2.8}$" in text and "--" in text


def test_columns_by_name_and_the_size_filter(tmp_path, cli, capsys):
    write_math_runs(tmp_path / "logs")
    write_math_runs(tmp_path / "logs7b", size="qwen2.5-7b")
    assert cli([str(tmp_path / "logs"), str(tmp_path / "logs7b"), "--tasks", "math", "gsm8k"]) == 0
    out = capsys.readouterr().out
    assert "### qwen2.5-0.5b" in out and "### qwen2.5-7b" in out
    assert out.count("| Method | Params | Seeds | MATH | GSM8K |") == 2
    assert cli([str(tmp_path), "--model_size", "qwen2.5-7b", "--tasks", "gsm8k"]) == 0
    assert "qwen2.5-0.5b" not in capsys.readouterr().out


def test_evaluations_are_never_taken_for_runs(tmp_path):
    dirs = write_math_runs(tmp_path)
    assert sorted(find_results_files([tmp_path])) == sorted(
        (d / "results.json").resolve() for d in dirs
    )


def test_an_unfinished_evaluation_is_an_empty_cell(tmp_path, cli, capsys):
    (run, *_) = write_math_runs(tmp_path)
    (run / "eval" / "math500").mkdir(parents=True)  # eval_math.py still running
    assert cli([str(tmp_path), "--tasks", "math500", "gsm8k"]) == 0
    out, err = capsys.readouterr()
    assert "| gpart | 131.1K | 2 | — | 42.0 ± 2.8 |" in out
    assert "no results for task 'math500' in any run" in err


def test_seeds_scored_on_different_numbers_of_examples_are_flagged(tmp_path, cli, capsys):
    (first, *_) = write_math_runs(tmp_path)
    path = first / "eval" / "gsm8k" / "results.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "total": 100}))
    assert cli([str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "seeds were evaluated on different numbers of examples (100: seeds [0]; " in err


@pytest.mark.parametrize(
    "record,message",
    [
        ({"accuracy": 85.0, "total": 100}, "'accuracy' must be a fraction in [0, 1], got 85.0"),
        ({"accuracy": 0.5}, "'total' must be a positive int, got None"),
    ],
)
def test_a_malformed_evaluation_is_one_error_line(tmp_path, cli, capsys, record, message):
    (first, *_) = write_math_runs(tmp_path)
    bad = first / "eval" / "gsm8k" / "results.json"
    bad.write_text(json.dumps(record))
    assert cli([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().count("\n") == 0
    assert err.startswith("collect_results_math.py: error: ") and str(bad) in err
    assert message in err


def _with_graders(path: Path, official: float) -> None:
    record = json.loads(path.read_text())
    gpart = {k: record[k] for k in ("accuracy", "correct")}
    record["graders"] = {"gpart": gpart, "official": {"accuracy": official, "correct": 0}}
    path.write_text(json.dumps(record))


def test_grader_picks_whose_accuracy_fills_the_cells(tmp_path, cli, capsys):
    dirs = write_math_runs(
        tmp_path, runs={"lora_r4_lr0.0002_5e6f7a8b": RUNS["lora_r4_lr0.0002_5e6f7a8b"]}
    )
    _with_graders(dirs[0] / "eval" / "gsm8k" / "results.json", official=0.30)
    assert cli([str(tmp_path), "--tasks", "gsm8k"]) == 0
    assert "| lora | 540.7K | 1 | 46.0 |" in capsys.readouterr().out  # ours by default
    assert cli([str(tmp_path), "--tasks", "gsm8k", "--grader", "official"]) == 0
    assert "| lora | 540.7K | 1 | 30.0 |" in capsys.readouterr().out


def test_a_grader_not_recorded_is_one_line_saying_how_to_rescore(tmp_path, cli, capsys):
    (run,) = write_math_runs(
        tmp_path, runs={"lora_r4_lr0.0002_5e6f7a8b": RUNS["lora_r4_lr0.0002_5e6f7a8b"]}
    )
    assert cli([str(tmp_path), "--grader", "math-verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 'math-verify' grader (recorded: gpart)" in err
    assert "eval_math.py --rescore" in err and " graders math-verify" in err
    # eval_math.py --rescore ... graders writes results.rescored.json beside: read from there
    rescored = run / "eval" / "gsm8k" / "results.rescored.json"
    rescored.write_text(json.dumps({"accuracy": 0.46, "total": 1319, "graders": {
        "math-verify": {"accuracy": 0.5}}}))  # fmt: skip
    assert cli([str(tmp_path), "--grader", "math-verify", "--tasks", "gsm8k"]) == 0
    assert "| lora | 540.7K | 1 | 50.0 |" in capsys.readouterr().out


def test_base_models_evaluated_alone_are_rows_of_their_own(tmp_path, cli, capsys):
    write_math_runs(tmp_path / "logs")
    base = tmp_path / "base-qwen" / "eval"
    for dataset, acc in (("gsm8k", 0.25), ("math", 0.05)):
        write_json_atomic(base / dataset / "results.json", {
            "accuracy": acc, "total": 1319 if dataset == "gsm8k" else 5000,
            "settings": {"model": "Qwen/Qwen2.5-0.5B"}})  # fmt: skip
    assert cli([str(tmp_path), "--tasks", "gsm8k", "math"]) == 0
    out = capsys.readouterr().out
    # the base model's row sits in the table of the runs that adapted it
    assert out.count("### ") == 1 and "| base model (Qwen2.5-0.5B) | 0 | 1 | 25.0 | 5.0 |" in out
    assert cli([str(base.parent)]) == 0  # alone, without any run
    assert "| base model (Qwen2.5-0.5B) | 0 | 1 | 25.0 | 5.0 |" in capsys.readouterr().out
