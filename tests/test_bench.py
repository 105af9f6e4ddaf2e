"""`python -m gpart.bench` end to end on a tiny config: every figure for every method.

No timing assertions: timings belong in the benchmark's output, never in tests.
"""

from __future__ import annotations

import gc
import json
import math
import runpy
import sys

import pytest
import torch

from gpart.bench.cli import main
from gpart.bench.methods import ABLATIONS, METHODS, TARGETED, UNTARGETED
from gpart.bench.report import markdown
from gpart.bench.runner import median_interval

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
    # the timing loop hides the heap from the collector (memory.frozen_heap) and gives it
    # back afterwards, so the setups it built can be freed
    assert gc.get_freeze_count() == 0
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


def test_tensor_peak_counts_live_bytes_inside_the_timed_window():
    """The CPU memory metric on real profiler events: allocations live together inside the
    window make its peak; a larger block freed before the window does not; a block
    allocated before the profile and freed inside it (no event) cannot lower it."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from gpart.bench.memory import peak_live_bytes

    old = torch.empty(4_000_000, dtype=torch.uint8)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        kept = torch.empty(1_000_000, dtype=torch.uint8)  # live through the window
        before = torch.empty(5_000_000, dtype=torch.uint8)
        del before
        with record_function("window"):
            a = torch.empty(2_000_000, dtype=torch.uint8)
            b = torch.empty(3_000_000, dtype=torch.uint8)
            del a, b, old
            c = torch.empty(500_000, dtype=torch.uint8)
    del kept, c
    events = prof.profiler.kineto_results.events()
    assert peak_live_bytes(events, "window") == 6_000_000
    with pytest.raises(RuntimeError, match="one profiler event 'elsewhere'"):
        peak_live_bytes(events, "elsewhere")


def test_cpu_tensor_peaks_are_repeatable_and_rss_stays_available(tmp_path):
    """Two runs of the same probes give the same tensor peaks to the byte (what lets the
    'GPart's peak <= LoRA's' target be decided); --memory_metric rss still measures RSS."""
    base = [*QWEN, "--warmup", "1", "--steps", "1", "--gpart_d", "64", "--targets", "qkvo",
            "--methods", "lora,gpart-stateless-random"]  # fmt: skip
    runs = []
    for i, metric in enumerate(("tensors", "tensors", "rss")):
        out = tmp_path / f"{i}.json"
        assert main([*base, "--memory_metric", metric, "--output", str(out)]) == 0
        runs.append(json.loads(out.read_text()))
    peaks = [[r["peak_bytes"] for r in run["rows"]] for run in runs]
    assert peaks[0] == peaks[1] and all(p > 0 for p in peaks[0])
    assert runs[0]["memory_metric"].startswith("peak live tensor bytes")
    assert runs[2]["memory_metric"].startswith("peak RSS")
    assert all(isinstance(p, int) and p >= 0 for p in peaks[2])


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
    # two rounds are too few for a 95 % interval of their median: none, not a made-up one
    assert all(row["ratio_lora_paired_ci95"] is None for row in rows.values())
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


def test_a_result_without_throughput_shows_a_dash_not_zero(tmp_path):
    # Results written before the benchmark recorded throughput: "-", never "0 items/s".
    out = tmp_path / "b.json"
    args = [*TINY, "--warmup", "0", "--steps", "1", "--no_memory", "--methods", "floor"]
    assert main([*args, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    recorded = markdown(result).splitlines()[4]
    assert recorded.startswith("| floor |") and float(recorded.split("|")[4].replace(",", "")) > 0
    del result["throughput_unit"]
    for row in result["rows"]:
        del row["throughput_per_s"]
    old = markdown(result).splitlines()
    assert "| items/s |" in old[2]
    assert old[4].split("|")[4].strip() == "-"


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


def test_module_entry_point_exit_code(monkeypatch, capsys):
    # `python -m gpart.bench` runs gpart/bench/__main__.py as __main__ through runpy, as
    # here: the same `sys.exit(main())`, without a fresh interpreter's import of torch,
    # transformers and peft (tens of seconds on 2 cores without compiled bytecode).
    monkeypatch.setattr(sys, "argv", ["gpart.bench", "--steps", "-1"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("gpart.bench", run_name="__main__", alter_sys=True)
    assert exc.value.code == 2
    # ours is the usage and one error line, and no traceback
    # (tests/test_quiet_startup.py: no third-party notice in a fresh process either)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("python -m gpart.bench: error:")
    assert sum("gpart.bench: error" in line for line in lines) == 1
    assert "Traceback" not in err


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
    from gpart.bench.cli import parse

    default = parse([])[0].methods
    assert not set(default) & set(ABLATIONS)  # opt-in: docs/performance.md table unchanged


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


# ------------------------------------------------------------------ --quantize nf4 / int8
QWEN = ["--model_config", "qwen2-tiny", "--batch_size", "2", "--seq_len", "8", "--threads", "1"]
# qwen2-tiny's q, k, v, o per block: q and o 32 x 32, k and v 16 x 32 (2 KV heads of 8).
QKVO_ENTRIES = 2 * (2 * 32 * 32 + 2 * 16 * 32)


def test_quantized_base_is_what_from_pretrained_gives_a_user(tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    from gpart.bench.methods import is_quantized_layer, share_frozen_weights, weight_entries
    from gpart.bench.models import build_workload

    for quantize, layer_type in (("nf4", bnb.nn.Linear4bit), ("int8", bnb.nn.Linear8bitLt)):
        spec, base, _ = build_workload(
            "qwen2-tiny", "auto", torch.device("cpu"), torch.bfloat16, seed=0, batch_size=2,
            seq_len=8, quantize=quantize, checkpoint_dir=tmp_path / quantize,
        )  # fmt: skip
        quantized = {n: m for n, m in base.named_modules() if is_quantized_layer(m)}
        # every linear layer of the blocks, as transformers' quantizer picks them; the
        # output head (tied to the embedding) stays in the bench dtype
        assert len(quantized) == 2 * 7 and all(type(m) is layer_type for m in quantized.values())
        assert base.lm_head.weight.dtype == torch.bfloat16 and base.is_quantized
        q = base.model.layers[0].self_attn.q_proj
        assert weight_entries(q) == 32 * 32  # unpacked, whatever the storage
        if quantize == "nf4":  # QLoRA's recipe: NF4, double quantization, bench dtype compute
            state = q.weight.quant_state
            assert state.quant_type == "nf4" and state.nested and q.compute_dtype == torch.bfloat16
        # one set of quantized layers for every method's view
        view = share_frozen_weights(base)
        assert view.model.layers[0].self_attn.q_proj is q
        assert view.model.norm.weight is not base.model.norm.weight
        assert view.model.norm.weight.data_ptr() == base.model.norm.weight.data_ptr()


def test_quantize_nf4_rows_with_peak_memory(tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "nf4.json"
    args = [*QWEN, "--warmup", "1", "--steps", "2", "--gpart_d", "64", "--targets", "qkvo",
            "--quantize", "nf4", "--methods", "lora,gpart-stateless-random", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert data["args"]["quantize"] == "nf4" and data["args"]["target_sets"] == ["qkvo"]
    assert data["args"]["methods"] == ["lora", "gpart-stateless-random"]
    assert data["environment"]["bitsandbytes"] and data["floor"] is None
    assert data["dropped"] == {}
    rows = _rows(data)
    assert set(rows) == {"lora [qkvo]", "gpart-stateless-random [qkvo]"}
    lora, gpart = rows["lora [qkvo]"], rows["gpart-stateless-random [qkvo]"]
    for row in (lora, gpart):
        assert isinstance(row["peak_bytes"], int) and row["peak_bytes"] >= 0
        assert row["adapted_weights"] == QKVO_ENTRIES and row["adapted_modules"] == 8
        assert row["ratio_floor"] is None and row["ratio_lora"] > 0
    assert gpart["trainable_params"] == 64
    assert lora["trainable_params"] == 2 * (8 * (32 + 32) * 2 + 8 * (32 + 16) * 2)
    # GPart's peak over LoRA's (None only if LoRA's rounds to no page above the base)
    if lora["peak_bytes"] > 0:
        assert gpart["peak_ratio_lora"] == pytest.approx(gpart["peak_bytes"] / lora["peak_bytes"])
        assert lora["peak_ratio_lora"] == 1.0
    else:
        assert gpart["peak_ratio_lora"] is None and lora["peak_ratio_lora"] is None


def test_quantize_int8_drops_full_fine_tuning_with_the_reason(tmp_path, capsys):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "int8.json"
    args = [*QWEN, "--warmup", "0", "--steps", "1", "--gpart_d", "64", "--targets", "qv",
            "--quantize", "int8", "--no_memory", "--output", str(out)]  # fmt: skip
    assert main(args) == 0  # the default methods: every one that can train on this base
    data = json.loads(out.read_text())
    assert data["args"]["quantize"] == "int8"
    assert set(data["dropped"]) == {"full", "floor"}
    assert all("--quantize" in why for why in data["dropped"].values())
    labels = {r["label"] for r in data["rows"]}
    assert "floor" not in labels and "full" not in labels
    assert {"head", "lora [qv]", "gpart-stateless-random [qv]"} <= labels
    table = capsys.readouterr().out
    assert "base int8 (bitsandbytes)" in table and "full, floor: not run under --quantize" in table


def test_quantize_refuses_full_fine_tuning_asked_for_by_name(capsys):
    assert main([*QWEN, "--quantize", "nf4", "--methods", "floor,lora", "--no_memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--methods floor with --quantize nf4" in err and len(err.splitlines()) == 1
    assert main([*QWEN, "--quantize", "fp8"]) == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def _binomial_rank(n: int, alpha: float = 0.05) -> int:
    """The largest k (1-based) with P(Binomial(n, 1/2) < k) <= alpha / 2: the interval
    [x_(k), x_(n+1-k)] covers the median with probability >= 1 - alpha (textbook order
    statistics, computed here with exact integers)."""
    k, below = 0, 0
    while (below + math.comb(n, k)) * 2 / 2**n <= alpha:
        below += math.comb(n, k)
        k += 1
    return k


@pytest.mark.parametrize("n", [6, 15, 40])
def test_median_interval_is_the_binomial_order_statistics(n):
    values = [((7 * i) % n) / n + 1.0 for i in range(n)]  # distinct, unsorted
    k = _binomial_rank(n)
    ordered = sorted(values)
    assert median_interval(values) == [ordered[k - 1], ordered[n - k]]
    assert median_interval(values[:5]) is None  # too few for 95 %


def test_median_interval_covers_the_median_of_skewed_noise():
    # Step-time ratios on a shared machine are skewed. The interval must cover the true
    # median (1.0 for a log-normal around 1) at least as often as it says, whatever the
    # spread: nominally 96.5 % for 15 rounds, so 93 % leaves room for 2000 trials' error.
    gen = torch.Generator().manual_seed(0)
    trials, covered = 2000, 0
    for _ in range(trials):
        sigma = 0.05 + 0.3 * torch.rand((), generator=gen, dtype=torch.float64)
        ratios = torch.exp(sigma * torch.randn(15, generator=gen, dtype=torch.float64))
        low, high = median_interval(ratios.tolist())
        covered += low <= 1.0 <= high
    assert covered / trials >= 0.93


@pytest.mark.slow  # compiles two models
def test_torch_compile_times_each_method_compiled(tmp_path, capsys):
    out = tmp_path / "b.json"
    # One block: compiling is the cost, and it grows with the graph.
    args = [*TINY, "--num_layers", "1", "--warmup", "0", "--steps", "1", "--gpart_d", "64"]
    args += ["--no_memory"]
    methods = ["--methods", "lora,gpart-stateless-random", "--targets", "qv"]
    # --compile on: GPart's fused kernels at this tiny size, inside the compiled model
    argv = [*args, *methods, "--compile", "on", "--torch_compile", "--output", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "compiled whole (torch.compile)" in table and "| compile (s) |" in table
    data = json.loads(out.read_text())
    assert data["args"]["torch_compile"] is True
    assert [r["method"] for r in data["rows"]] == ["lora", "gpart-stateless-random"]
    assert all(r["compile_s"] > 0 and math.isfinite(r["step_s_median"]) for r in data["rows"])
    plain = tmp_path / "plain.json"
    assert main([*args, *methods, "--output", str(plain)]) == 0
    assert all(r["compile_s"] is None for r in json.loads(plain.read_text())["rows"])


def test_launch_bound_preset_is_72_narrow_linear_layers():
    # The CPU stand-in for a GPU's launch-bound regime (docs/performance.md): RoBERTa-base's
    # 72 adapted linear layers, each so narrow that its matmuls cost less than its calls.
    from gpart.bench.models import build_workload, target_modules

    spec, base, batch = build_workload(
        "roberta-launch-bound",
        "auto",
        torch.device("cpu"),
        torch.float32,
        seed=0,
        batch_size=2,
        seq_len=16,
    )
    names = target_modules(base, spec, "all-linear")
    shapes = {tuple(base.get_submodule(n).weight.shape) for n in names}
    assert len(names) == 72 and shapes == {(64, 64), (256, 64), (64, 256)}
    assert batch["input_ids"].shape == (2, 16)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("fused", {"fused": True}),
        ("foreach", {"foreach": True}),
        ("per_tensor", {"foreach": False}),
    ],
)
def test_every_method_steps_with_the_chosen_adamw(choice, expected):
    # Fused by default: the optimizer the runners train with (Trainer's adamw_torch_fused).
    # On small layers the choice moves LoRA's step (two tensors per layer) and hardly
    # GPart's (one theta), so a ratio must say which one it was measured with.
    from gpart.bench.cli import parse
    from gpart.bench.methods import build_setup
    from gpart.bench.models import build_workload

    argv = [*TINY, "--methods", "full,lora,gpart-stateless-random", "--gpart_d", "256"]
    args, _, _ = parse(argv if choice == "fused" else [*argv, "--optimizer", choice])
    assert args.hp.optimizer == choice
    spec, base, batch = build_workload(
        "roberta-tiny", "auto", torch.device("cpu"), torch.float32, seed=0, batch_size=2, seq_len=8
    )
    for name, targets in (("full", None), ("lora", "qv"), ("gpart-stateless-random", "qv")):
        setup = build_setup(name, targets, base, spec, args.hp)
        defaults = setup.optimizer.defaults
        assert {k: defaults[k] for k in expected} == expected, name
        before = [p.detach().clone() for p in setup.optimizer.param_groups[0]["params"]]
        setup.step(batch)
        after = setup.optimizer.param_groups[0]["params"]
        assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True)), name


def test_the_optimizer_is_recorded_and_shown(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = [*TINY, *FAST, "--methods", "lora", "--targets", "qv", "--no_memory"]
    assert main([*argv, "--optimizer", "foreach", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["args"]["hp"]["optimizer"] == "foreach"
    assert ", AdamW foreach," in capsys.readouterr().out
