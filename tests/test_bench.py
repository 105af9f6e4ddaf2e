"""`python -m gpart.bench` end to end on a tiny config: every figure for every method.

No timing assertions: timings belong in the benchmark's output, never in tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from gpart.bench.cli import main
from gpart.bench.methods import ABLATIONS, METHODS, TARGETED, UNTARGETED

TINY = ["--model_config", "roberta-tiny", "--batch_size", "2", "--seq_len", "16"]
FAST = ["--warmup", "1", "--steps", "2", "--gpart_d", "256", "--threads", "1"]
FIGURES = (
    "step_s_median",
    "ratio_floor",
    "peak_bytes",
    "trainable_params",
    "adapted_weights",
    "state_bytes",
    "state_bytes_per_weight",
    "saved_bytes",
)


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main([*TINY, *FAST, "--targets", "both", "--output", str(out)]) == 0
    return json.loads(out.read_text())


def _rows(result: dict) -> dict[str, dict]:
    return {r["label"]: r for r in result["rows"]}


def test_every_method_and_target_set_has_every_figure(result):
    rows = _rows(result)
    default = [m for m in TARGETED if m not in ABLATIONS]  # the ablations are opt-in
    expected = set(UNTARGETED) | {f"{m} [{t}]" for m in default for t in ("qv", "all-linear")}
    assert set(rows) == expected
    assert len(METHODS) == 10 + len(ABLATIONS)
    for label, row in rows.items():
        for key in FIGURES:
            value = row[key]
            assert isinstance(value, (int, float)) and math.isfinite(value), (label, key, value)
        assert len(row["step_s"]) == 2 and all(t > 0 for t in row["step_s"])
        assert row["step_s_median"] > 0 and row["trainable_params"] > 0
        assert row["peak_bytes"] >= 0 and row["saved_bytes"] > 0
        if row["target_set"] is not None:  # every targeted row is compared with LoRA
            assert row["ratio_lora"] is not None and row["ratio_lora"] > 0
    assert rows["floor"]["ratio_floor"] == 1.0
    assert result["memory_metric"] and result["floor"]


def test_paired_ratios_are_per_round_with_their_range(result):
    rows = _rows(result)
    lora = rows["lora [qv]"]
    for label, row in rows.items():
        if row["target_set"] is None:  # no LoRA row to pair with
            assert row["ratio_lora_paired"] is None and row["ratio_lora_paired_range"] is None
            continue
        ref = rows[f"lora [{row['target_set']}]"]
        rounds = [a / b for a, b in zip(row["step_s"], ref["step_s"], strict=True)]
        low, high = row["ratio_lora_paired_range"]
        assert (low, high) == (min(rounds), max(rounds)), label
        assert low <= row["ratio_lora_paired"] <= high
    assert lora["ratio_lora_paired_range"] == [1.0, 1.0]
    floor_rounds = [a / b for a, b in zip(lora["step_s"], rows["floor"]["step_s"], strict=True)]
    assert lora["ratio_floor_paired_range"] == [min(floor_rounds), max(floor_rounds)]


def test_figures_mean_what_they_say(result):
    rows = _rows(result)
    for t in ("qv", "all-linear"):
        stateless = rows[f"gpart-stateless-random [{t}]"]
        materialized = rows[f"gpart-materialized-random [{t}]"]
        # stateless: no per-weight state, only the d scales; materialized: int32 ids
        assert stateless["state_bytes_per_weight"] == 0.0
        assert stateless["state_bytes"] == 256 * 4
        assert materialized["state_bytes_per_weight"] == 4.0
        # GPart trains d = 256 numbers plus the classifier head, whatever the mode
        assert stateless["trainable_params"] == materialized["trainable_params"]
        assert stateless["trainable_params"] == 256 + rows["head"]["trainable_params"]
        assert rows[f"lora [{t}]"]["state_bytes"] == 0
    assert (
        rows["gpart-stateless-random [all-linear]"]["adapted_weights"]
        > (rows["gpart-stateless-random [qv]"]["adapted_weights"])
    )
    assert rows["full"]["trainable_params"] == rows["floor"]["trainable_params"]


def test_markdown_table_lists_every_row(capsys, tmp_path):
    out = tmp_path / "b.json"
    args = [*TINY, "--warmup", "0", "--steps", "1", "--gpart_d", "64", "--no_memory"]
    assert (
        main([*args, "--methods", "floor,lora,gpart", "--targets", "qv", "--output", str(out)]) == 0
    )
    table = capsys.readouterr().out
    assert (
        "| method | targets | step (s) | tokens/s | x floor | x LoRA | x LoRA, paired "
        "| peak mem (MiB) |" in table
    )
    for name in ("floor", "lora", "gpart-stateless-random", "gpart-materialized-balanced"):
        assert f"| {name} |" in table
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["rows"]][0] == "floor"
    assert all(r["peak_bytes"] is None for r in data["rows"])


def test_bf16_and_a_qwen2_shaped_decoder(tmp_path):
    out = tmp_path / "q.json"
    args = ["--model_config", "qwen2-tiny", "--batch_size", "2", "--seq_len", "8"]
    args += ["--warmup", "0", "--steps", "1", "--gpart_d", "64", "--no_memory", "--dtype", "bf16"]
    assert main([*args, "--methods", "floor,head,lora,gpart-stateless-random"]) == 0
    assert main([*args, "--methods", "gpart-stateless-random", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["args"]["task"] == "causal_lm" and data["args"]["dtype"] == "bf16"
    assert data["throughput_unit"] == "tokens"
    row = data["rows"][0]  # tokens per second: batch x seq_len over the median step
    assert row["throughput_per_s"] == pytest.approx(2 * 8 / row["step_s_median"])


def test_an_image_model_with_pixel_inputs(tmp_path):
    # ViT-shaped, q/v under transformers 5's names: GPart against LoRA and the floor.
    out = tmp_path / "vit.json"
    args = ["--model_config", "vit-tiny", "--batch_size", "2", "--warmup", "0", "--steps", "1",
            "--gpart_d", "64", "--no_memory", "--targets", "qv", "--output", str(out)]  # fmt: skip
    assert main([*args, "--methods", "floor,lora,gpart-stateless-random"]) == 0
    data = json.loads(out.read_text())
    assert data["args"]["task"] == "image_cls"
    rows = _rows(data)
    gpart = next(r for label, r in rows.items() if label.startswith("gpart"))
    # 2 layers x (q, v) of 32 x 32 weights: exactly the query/value projections adapted.
    assert gpart["adapted_weights"] == 2 * 2 * 32 * 32 and gpart["trainable_params"] == 64


def test_local_config_file(tmp_path):
    from gpart.bench.models import PRESETS

    cfg = tmp_path / "config.json"
    cfg.write_text(PRESETS["roberta-tiny"]().to_json_string())
    args = ["--model_config", str(tmp_path), "--batch_size", "1", "--seq_len", "8"]
    assert main([*args, "--warmup", "0", "--steps", "1", "--no_memory", "--methods", "head"]) == 0


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--methods", "lora,dora"], "unknown method 'dora'"),
        (["--model_config", "no-such-model"], "neither a preset"),
        (["--batch_size", "0"], "positive integer"),
        (["--dtype", "fp8"], "invalid choice"),
        (["--seq_len", "4096", "--model_config", "roberta-tiny"], "exceeds"),
        ([*TINY, "--gpart_d", "100000000", "--methods", "gpart"], "d="),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv, needle, capsys):
    assert main([*argv, "--no_memory", "--steps", "1", "--warmup", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_module_entry_point_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "gpart.bench", "--steps", "-1"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    # bitsandbytes (the dev group's, imported through peft) may print its own notice about
    # optional CPU kernels first; ours is one line, the last, and no traceback.
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("python -m gpart.bench: error:")
    assert sum("gpart.bench: error" in line for line in lines) == 1
    assert "Traceback" not in proc.stderr


def test_cuda_is_skipped_cleanly_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["--device", "cuda", *TINY]) == 0
    assert "skipping" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_run(tmp_path):
    out = tmp_path / "cuda.json"
    args = [*TINY, "--device", "cuda", "--dtype", "bf16", "--warmup", "1", "--steps", "1"]
    assert main([*args, "--gpart_d", "64", "--targets", "qv", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["memory_metric"].startswith("torch.cuda.max_memory_allocated")
    assert all(r["peak_bytes"] is not None and r["peak_bytes"] > 0 for r in data["rows"])


def test_the_ablation_variants_run_on_request(tmp_path):
    out = tmp_path / "abl.json"
    args = [*TINY, "--warmup", "0", "--steps", "1", "--gpart_d", "64", "--threads", "1",
            "--no_memory", "--targets", "qv", "--methods", "floor,ablations", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    labels = [r["label"] for r in json.loads(out.read_text())["rows"]]
    assert any("gpart-block" in x for x in labels) and any("gpart-fastfood" in x for x in labels)
    assert any("gpart-signed" in x for x in labels)
    from gpart.bench.cli import build_parser

    default = build_parser().parse_args([]).methods
    assert "fastfood" not in default  # opt-in: docs/performance.md table unchanged


def test_decoder_row_options_qkvo_num_layers_and_lora_rank(tmp_path):
    # docs/performance.md decoder row: q,k,v,o targets, a shortened stack, LoRA r=4 alpha 4.
    out = tmp_path / "dec.json"
    args = ["--model_config", "qwen2-tiny", "--batch_size", "2", "--seq_len", "8", "--warmup",
            "0", "--steps", "1", "--gpart_d", "64", "--no_memory", "--num_layers", "1",
            "--targets", "qkvo,all-linear", "--lora_r", "4", "--lora_alpha", "4",
            "--methods", "floor,lora,gpart-stateless-random", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    data = json.loads(out.read_text())
    rows = _rows(data)
    assert data["args"]["num_layers"] == 1 and data["args"]["target_sets"] == ["qkvo", "all-linear"]
    gpart = rows["gpart-stateless-random [qkvo]"]
    # one block of qwen2-tiny: q (32x32), k and v (16x32, 2 kv heads of 8), o (32x32)
    assert gpart["adapted_modules"] == 4
    assert gpart["adapted_weights"] == 2 * 32 * 32 + 2 * 16 * 32
    assert rows["lora [qkvo]"]["trainable_params"] == 4 * (32 + 32) * 2 + 4 * (32 + 16) * 2
    assert rows["gpart-stateless-random [all-linear]"]["adapted_modules"] == 7


def test_qkvo_on_an_encoder_and_bad_target_sets(capsys):
    from gpart.bench.models import ModelSpec, load_config, target_modules

    spec = ModelSpec(load_config("roberta-tiny"), "seq_cls")
    names = target_modules(spec.build(torch.device("cpu"), torch.float32), spec, "qkvo")
    assert len(names) == 2 * 4 and sum(n.endswith("attention.output.dense") for n in names) == 2
    assert main([*TINY, "--targets", "qv,kv", "--no_memory"]) == 2
    assert "--targets: unknown 'kv'" in capsys.readouterr().err
