"""The paper's figures from collected results: their data is checked, not their pixels."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from gpart.results import run_dir, write_json_atomic
from gpart.results.collect import ResultsError, find_results_files, load_run_result
from gpart.results.io import append_jsonl
from gpart.results.plots import main, params_curve, training_curve
from test_results import record

# method -> {trainable params: [score per seed]}
SWEEP = {
    "gpart": {1024: [0.60, 0.64], 4096: [0.70, 0.72], 16384: [0.75, 0.77]},
    "lora": {147456: [0.74, 0.78]},
}


def write_sweep(root):
    for method, points in SWEEP.items():
        for params, scores in points.items():
            name = f"{method}_d{params}_0000abcd"
            for seed, v in enumerate(scores):
                r = record(run_name=name, adapter_type=method, method=method, task="rte", seed=seed,
                           test={"accuracy": v}, params={"trainable_adapter": params,
                                                         "trainable_head": 10})  # fmt: skip
                write_json_atomic(run_dir(root, name, "rte", seed) / "results.json", r)


def test_params_figure_data_and_files(tmp_path):
    write_sweep(tmp_path / "logs")
    results = [load_run_result(p) for p in find_results_files([tmp_path / "logs"])]
    series = {"GPart": [r for r in results if r.method == "gpart"],
              "LoRA": [r for r in results if r.method == "lora"]}  # fmt: skip
    data = params_curve(series, "rte")
    assert [p["params"] for p in data["GPart"]] == [1024, 4096, 16384]
    mid = data["GPart"][1]
    assert mid["mean"] == pytest.approx(71.0) and mid["n"] == 2
    assert mid["std"] == pytest.approx(statistics.stdev([70.0, 72.0]))
    assert main(["params", str(tmp_path / "logs"), "--task", "rte", "--out",
                 str(tmp_path / "fig" / "rte")]) == 0  # fmt: skip
    assert (tmp_path / "fig" / "rte.png").stat().st_size > 0
    assert (tmp_path / "fig" / "rte.pdf").stat().st_size > 0
    # Two variants at one parameter count in one line is refused, naming the fix.
    variant = dataclasses.replace(series["GPart"][0], run_name="gpart_block_0000ffff")
    with pytest.raises(ResultsError, match="give each variant its own --series"):
        params_curve({"GPart": [*series["GPart"], variant]}, "rte")
    assert main(["params", str(tmp_path / "logs"), "--task", "sst2", "--out", "x"]) == 2


def test_training_curves_from_metrics_and_the_last_checkpoint(tmp_path):
    run = tmp_path / "gpart_x" / "rte" / "seed_0"
    for step, acc in ((10, 0.5), (20, 0.7)):
        append_jsonl(run / "metrics.jsonl", {"step": step, "eval_accuracy": acc, "eval_loss": 1.0})
    append_jsonl(run / "metrics.jsonl", {"step": 20, "test_accuracy": 0.69})
    write_json_atomic(run / "results.json", record(primary_metric="accuracy"))
    for step in (10, 20):
        history = [{"step": s, "loss": 1.0 / s} for s in range(5, step + 1, 5)]
        write_json_atomic(run / f"checkpoint-{step}" / "trainer_state.json",
                          {"log_history": history})  # fmt: skip
    curve = training_curve(run)
    assert curve["selection"] == [(10, 0.5), (20, 0.7)]  # the test record is not a point
    assert [s for s, _ in curve["loss"]] == [5, 10, 15, 20]  # from the newest checkpoint
    assert main(["curves", str(run), "--out", str(tmp_path / "curves")]) == 0
    assert (tmp_path / "curves.png").exists() and (tmp_path / "curves.pdf").exists()
    json.dumps(curve)  # plain data


def test_collect_by_d_lists_a_sweep_in_order(tmp_path, capsys):
    from gpart.results.cli import collect_main

    write_sweep(tmp_path / "logs")
    argv = [str(tmp_path / "logs"), "--by", "d"]
    assert collect_main(argv, prog="c", description="", task_labels={"rte": "RTE"},
                        average_label="Avg.") == 0  # fmt: skip
    rows = [line.split(" | ")[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["| gpart d=1.0K", "| gpart d=4.1K", "| gpart d=16.4K", "| lora d=147.5K"]
