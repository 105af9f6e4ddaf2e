"""Run names / directories, atomic files, the results.json schema, and table collection."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from gpart.results.collect import collect_results, format_param_count
from gpart.results.io import append_jsonl, read_json, read_jsonl, write_json_atomic
from gpart.results.rundir import (
    canonical_config_json,
    config_hash,
    parse_run_dir,
    run_dir,
    run_name,
)
from gpart.results.schema import ResultsError, build_results, validate_results

SCRIPT = (
    Path(__file__).resolve().parents[1] / "src" / "scripts" / "glue" / "collect_results_glue.py"
)

# --------------------------------------------------------------------------------------------
# io


def test_atomic_json_roundtrip_and_no_leftovers(tmp_path):
    target = tmp_path / "sub" / "results.json"
    obj = {"b": np.float32(0.5), "a": np.int64(3), "path": tmp_path, "arr": np.arange(3)}
    write_json_atomic(target, obj)
    assert read_json(target) == {"a": 3, "arr": [0, 1, 2], "b": 0.5, "path": str(tmp_path)}
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_failed_atomic_write_keeps_old_file(tmp_path):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(target, {"v": object()})
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_jsonl_append_and_truncated_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1, "acc": np.float64(0.5)})
    append_jsonl(path, {"step": 2, "acc": 0.6})
    assert read_jsonl(path) == [{"acc": 0.5, "step": 1}, {"acc": 0.6, "step": 2}]
    with open(path, "a") as f:
        f.write('{"step": 3, "ac')  # a crash mid-line
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)


# --------------------------------------------------------------------------------------------
# run names


CONFIG = {
    "adapter": {"type": "gpart", "d": 23000, "proj_seed": 42, "target_modules": ["query", "value"]},
    "training": {"lr": 0.01, "head_lr": 0.004, "epochs": 20, "seed": 0},
    "task": "rte",
    "seed": 0,
    "output_dir": "logs",
}


def test_same_config_same_hash_any_change_new_hash():
    reordered = {k: CONFIG[k] for k in reversed(list(CONFIG))}
    assert config_hash(reordered) == config_hash(CONFIG)
    base = config_hash(CONFIG)
    assert len(base) == 8 and int(base, 16) >= 0
    changed = json.loads(json.dumps(CONFIG))
    changed["adapter"]["d"] = 23001
    assert config_hash(changed) != base
    changed = json.loads(json.dumps(CONFIG))
    changed["adapter"]["target_modules"] = ["query"]
    assert config_hash(changed) != base
    changed = json.loads(json.dumps(CONFIG))
    changed["training"]["lr"] = 0.010000001
    assert config_hash(changed) != base


def test_the_hash_covers_exactly_what_it_is_given():
    # Leaving out what varies within a sweep is the caller's choice (sweep_identity), so
    # every key given here counts, nested or not.
    assert config_hash({**CONFIG, "seed": 9}) != config_hash(CONFIG)
    assert '"proj_seed":42' in canonical_config_json(CONFIG)
    assert canonical_config_json({"b": 1, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":1}'


def test_run_name_and_layout(tmp_path):
    name = run_name("gpart", {"d": 23000, "lr": 0.01, "tm": ["query", "value"]}, CONFIG)
    assert name == f"gpart_d23000_lr0.01_tmquery-value_{config_hash(CONFIG)}"
    weird = run_name("lora", {"note": "a b/c"}, CONFIG)
    assert "/" not in weird and " " not in weird and weird.startswith("lora_notea-b-c_")
    d = run_dir(tmp_path, name, "rte", 3)
    assert d == tmp_path / name / "rte" / "seed_3"
    assert parse_run_dir(d) == (name, "rte", 3)
    with pytest.raises(ValueError):
        run_dir(tmp_path, "a/b", "rte", 0)
    with pytest.raises(ValueError):
        parse_run_dir(tmp_path / "rte")


# --------------------------------------------------------------------------------------------
# schema


def record(**over):
    base = dict(
        run_name="gpart_d23000_abcd1234",
        adapter_type="gpart",
        method="GPart",
        task="rte",
        seed=0,
        primary_metric="accuracy",
        test={"accuracy": np.float64(0.75)},
        selection={"strategy": "best", "metric": "accuracy", "best_value": 0.8, "size": 300},
        params={"trainable_adapter": 23000, "trainable_head": 592130},
        wall_time_s=12.5,
    )
    base.update(over)
    return build_results(**base)


def test_build_results_validates():
    r = record()
    assert r["schema_version"] == 1 and r["test"] == {"accuracy": 0.75}
    assert isinstance(r["test"]["accuracy"], float)
    with pytest.raises(ResultsError, match="primary metric 'mcc' not in test metrics"):
        record(primary_metric="mcc")
    with pytest.raises(ResultsError, match="selection strategy 'first'"):
        record(selection={"strategy": "first"})
    bad = dict(r)
    del bad["params"]
    with pytest.raises(ResultsError, match="where.json: missing key 'params'"):
        validate_results(bad, where="where.json")
    with pytest.raises(ResultsError, match="'seed' must be int"):
        validate_results({**r, "seed": True})
    with pytest.raises(ResultsError, match="is nan"):
        record(test={"accuracy": float("nan")})


# --------------------------------------------------------------------------------------------
# collection

SCORES = {  # method -> task -> per-seed primary metric
    "GPart": {"cola": [0.60, 0.64], "sst2": [0.94, 0.95], "rte": [0.70, 0.74]},
    "LoRA": {"cola": [0.63, 0.62], "sst2": [0.95, 0.955]},  # no rte
}
PARAMS = {"GPart": 23000, "LoRA": 294912}


def write_fake_runs(root: Path, scores=SCORES) -> None:
    for method, tasks in scores.items():
        name = f"{method.lower()}_x_0000abcd"
        for task, values in tasks.items():
            for seed, v in enumerate(values):
                r = record(
                    run_name=name,
                    adapter_type=method.lower(),
                    method=method,
                    task=task,
                    seed=seed,
                    primary_metric="mcc" if task == "cola" else "accuracy",
                    test={"mcc" if task == "cola" else "accuracy": v, "f1": 0.1},
                    params={"trainable_adapter": PARAMS[method], "trainable_head": 1000},
                )
                write_json_atomic(run_dir(root, name, task, seed) / "results.json", r)


def test_mean_std_over_two_seeds(tmp_path):
    write_fake_runs(tmp_path)
    table = collect_results([tmp_path], task_order=["cola", "sst2", "rte"])
    assert table.tasks == ("cola", "sst2", "rte")
    assert [m.label for m in table.methods] == ["GPart", "LoRA"]
    gpart = table.methods[0]
    for task, values in SCORES["GPart"].items():
        cell = gpart.tasks[task]
        x100 = [100 * v for v in values]
        assert cell.mean == pytest.approx(np.mean(x100))
        assert cell.std == pytest.approx(np.std(x100, ddof=1))
        assert cell.n == 2 and cell.seeds == (0, 1)
    assert gpart.tasks["cola"].mean == pytest.approx(62.0) and gpart.tasks[
        "cola"
    ].std == pytest.approx(2.8284271, abs=1e-6)
    assert gpart.average == pytest.approx(statistics.fmean([62.0, 94.5, 72.0]))
    assert gpart.params_adapter == (23000,) and not gpart.missing


def test_missing_task_marked_and_excluded_from_average(tmp_path):
    write_fake_runs(tmp_path)
    table = collect_results([tmp_path], task_order=["cola", "sst2", "rte"])
    lora = table.methods[1]
    assert lora.missing == ("rte",)
    assert lora.average == pytest.approx(statistics.fmean([62.5, 95.25]))
    assert any("LoRA" in w and "rte" in w for w in table.warnings)
    md = table.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| Method | Params | Seeds | cola | sst2 | rte | Avg. |"
    assert lines[2] == "| GPart | 23.0K | 2 | 62.0 ± 2.8 | 94.5 ± 0.7 | 72.0 ± 2.8 | 76.2 |"
    assert lines[3] == "| LoRA | 294.9K | 2 | 62.5 ± 0.7 | 95.2 ± 0.4 | — | 78.9\\* |"
    assert "average over the tasks present" in md


def test_latex_and_csv(tmp_path):
    write_fake_runs(tmp_path)
    table = collect_results(
        [tmp_path], tasks=["sst2", "cola"], task_labels={"sst2": "SST-2", "cola": "CoLA"}
    )
    tex = table.to_latex()
    assert "\\begin{tabular}{lrrrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "Method & Params & SST-2 & CoLA & Avg. \\\\" in tex
    assert "GPart & 23.0K & $94.5_{\\pm 0.7}$ & $62.0_{\\pm 2.8}$ & 78.2 \\\\" in tex
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [r["method"] for r in rows] == ["GPart", "LoRA"]
    assert float(rows[0]["cola_mean"]) == pytest.approx(62.0)
    assert float(rows[0]["cola_std"]) == pytest.approx(np.std([60.0, 64.0], ddof=1))
    assert rows[1]["cola_n"] == "2" and rows[1]["params_adapter"] == "294912"
    assert "rte_mean" not in rows[0]  # --tasks restricts the columns


def test_single_seed_and_label_clash(tmp_path):
    write_fake_runs(tmp_path / "a", {"GPart": {"rte": [0.7]}})
    scores = {"GPart": {"rte": [0.8, 0.9]}}
    for seed, v in enumerate(scores["GPart"]["rte"]):
        r = record(run_name="gpart_other_ffff0000", task="rte", seed=seed, test={"accuracy": v})
        write_json_atomic(run_dir(tmp_path / "b", r["run_name"], "rte", seed) / "results.json", r)
    table = collect_results([tmp_path / "a", tmp_path / "b"])
    labels = [m.label for m in table.methods]
    assert labels == ["GPart [gpart_x_0000abcd]", "GPart [gpart_other_ffff0000]"]
    assert table.methods[0].tasks["rte"].std is None
    assert "| 70.0 |" in table.to_markdown()


def test_seeds_of_one_cell_on_different_data_are_flagged(tmp_path):
    data = {0: "aaaaaaaaaaaa", 1: "aaaaaaaaaaaa", 2: "bbbbbbbbbbbb"}
    for seed, digest in data.items():
        r = record(task="rte", seed=seed, data_fingerprint=digest)
        write_json_atomic(run_dir(tmp_path, r["run_name"], "rte", seed) / "results.json", r)
    other = record(task="sst2", seed=0, data_fingerprint="cccccccccccc")  # another task: fine
    write_json_atomic(run_dir(tmp_path, other["run_name"], "sst2", 0) / "results.json", other)
    table = collect_results([tmp_path])
    (warning,) = [w for w in table.warnings if "different data" in w]
    assert "task 'rte'" in warning and "data bbbbbbbbbbbb: seeds [2]" in warning
    assert "--force" in warning
    # Same data everywhere (or runs that predate fingerprints): no warning.
    (tmp_path / r["run_name"] / "rte" / "seed_2" / "results.json").unlink()
    assert not [w for w in collect_results([tmp_path]).warnings if "different data" in w]


def test_collection_errors(tmp_path):
    with pytest.raises(ResultsError, match="no such file or directory"):
        collect_results([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no results.json under"):
        collect_results([tmp_path / "empty"])
    write_fake_runs(tmp_path / "runs")
    bad = run_dir(tmp_path / "runs", "gpart_x_0000abcd", "rte", 0) / "results.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match=f"{bad}: not valid JSON"):
        collect_results([tmp_path / "runs"])
    write_fake_runs(tmp_path / "runs")  # repaired
    # Passing a parent and one of its children counts each file once.
    table = collect_results([tmp_path / "runs", bad.parent])
    assert table.methods[0].tasks["rte"].n == 2
    # A copy of a run under another directory: the same seed twice is an error, not a mean.
    write_fake_runs(tmp_path / "copy", {"GPart": {"rte": [0.5]}})
    with pytest.raises(ResultsError, match="seed 0 appears twice"):
        collect_results([tmp_path / "runs", tmp_path / "copy"])


def test_format_param_count():
    assert format_param_count(512) == "512"
    assert format_param_count(23000) == "23.0K"
    assert format_param_count(294912) == "294.9K"
    assert format_param_count(999_960) == "1.0M"
    assert format_param_count(124_645_632) == "124.6M"
    assert format_param_count(7_000_000_000) == "7.0B"


# --------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("collect_results_glue", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_prints_table_and_writes_files(tmp_path, cli, capsys):
    write_fake_runs(tmp_path / "logs")
    tex, table_csv = tmp_path / "out" / "t.tex", tmp_path / "t.csv"
    code = cli([str(tmp_path / "logs"), "--latex", str(tex), "--csv", str(table_csv)])
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0] == "| Method | Params | Seeds | CoLA | SST-2 | RTE | GLUE Avg. |"
    assert "| GPart | 23.0K | 2 | 62.0 ± 2.8 | 94.5 ± 0.7 | 72.0 ± 2.8 | 76.2 |" in out
    assert err.startswith("warning: LoRA: no results for ['rte']")
    assert "GLUE Avg." in tex.read_text() and "cola_mean" in table_csv.read_text()


def test_cli_errors_exit_2_with_one_line(tmp_path, cli, capsys):
    assert cli([str(tmp_path / "nope")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().count("\n") == 0
    assert err.startswith("collect_results_glue.py: error: no such file or directory")
    with pytest.raises(SystemExit) as exc:
        cli([str(tmp_path), "--tasks", "squad"])
    assert exc.value.code == 2
    assert "invalid choice: 'squad'" in capsys.readouterr().err
