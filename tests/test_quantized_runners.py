"""``model.quantization``: the runners on bitsandbytes 4-bit / 8-bit bases (QLoRA-style),
offline on tiny models built from configs, with bitsandbytes (the `quant` extra, in the dev
group) doing the quantization and the reference forward."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from glue_env import write_glue_data, write_tiny_model  # noqa: E402
from gpart.runners import glue as glue_runner  # noqa: E402
from gpart.runners import math as math_runner  # noqa: E402
from gpart.runners import vision as vision_runner  # noqa: E402
from math_env import BNB_WIDE, rows, write_jsonl, write_tiny_decoder  # noqa: E402
from vision_env import write_image_folder, write_tiny_vit  # noqa: E402

FAST = ["training.epochs", "1", "training.batch_size", "4", "training.grad_accum", "1",
        "training.num_workers", "0", "training.precision", "fp32",
        "training.max_seq_length", "64", "data.heldout_samples", "4",
        "training.gradient_checkpointing", "false", "training.lr", "5e-2",
        "training.warmup_ratio", "0", "adapter.d", "256", "adapter.gpart_dropout", "0"]  # fmt: skip
IDS = torch.tensor([[0, 5, 17, 42, 99, 120, 7, 3]])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    return {
        "llama": write_tiny_decoder(root / "llama", "llama", **BNB_WIDE),
        "data": write_jsonl(root / "data" / "metamathqa" / "train.jsonl", rows(16)),
    }


@pytest.fixture(autouse=True)
def token_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPART_CACHE_DIR", str(tmp_path / "cache"))


def _math(env, out, *args):
    flags = [a for a in args if a.startswith("--") or "/" in a]
    overrides = [a for a in args if a not in flags]
    return math_runner.main(["--adapter_type", "gpart", "--base_model", str(env["llama"]),
                             "--data_dir", str(env["data"].parents[1]), "--output_dir",
                             str(out), *flags, *FAST, *overrides])  # fmt: skip


def _bnb_config(quant: str):
    from transformers import BitsAndBytesConfig

    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,  # the runs here train in fp32
    )


def _adapted(path, run: Path, quant: str):
    """The trained run as a user reloads it: the quantized base plus the saved adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(path, quantization_config=_bnb_config(quant))
    return PeftModel.from_pretrained(base, run / "adapter").eval()


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_the_math_runner_trains_on_a_quantized_base_named_by_it(env, tmp_path, quant):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "logs"
    assert _math(env, out, "model.quantization", quant) == 0
    (run,) = [p.parent for p in out.rglob("results.json")]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model"]["quantization"] == quant
    assert json.loads((run / "results.json").read_text())["test"]["loss"] > 0
    # The quantization is part of the run's identity: the float run gets another name.
    assert _math(env, out) == 0
    names = {p.parent.parent.parent.name for p in out.rglob("results.json")}
    assert len(names) == 2
    model = _adapted(env["llama"], run, quant)
    kind = bnb.nn.Linear8bitLt if quant == "int8" else bnb.nn.Linear4bit
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q.get_base_layer(), kind)
    plain = AutoModelForCausalLM.from_pretrained(
        env["llama"], quantization_config=_bnb_config(quant)
    )
    assert (_logits(model) - _logits(plain)).abs().max() > 1e-2  # theta trained


def test_export_merged_from_a_4bit_run_is_plain_bf16_matching_the_adapter(env, tmp_path):
    from transformers import AutoModelForCausalLM

    out, dest = tmp_path / "logs", tmp_path / "merged"
    assert _math(env, out, "--export_merged", str(dest), "model.quantization", "nf4") == 0
    (run,) = [p.parent for p in out.rglob("results.json")]
    assert "quantization_config" not in json.loads((dest / "config.json").read_text())
    exported = AutoModelForCausalLM.from_pretrained(dest).eval()  # transformers alone
    assert exported.dtype == torch.bfloat16
    linears = [m for m in exported.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and not any(isinstance(m, bnb.nn.Linear4bit) for m in linears)
    adapted = _adapted(env["llama"], run, "nf4")
    want, got = _logits(adapted), _logits(exported)
    with adapted.disable_adapter():
        base = _logits(adapted)
    assert (want - base).abs().max() > 0.1  # the export carries a real update
    # bf16 weights (8 mantissa bits) against the fp32 forward of the 4-bit model: the same
    # W0 + dW up to bf16 rounding, far below the update itself.
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)


def test_an_evaluation_during_training_leaves_the_4bit_weights_trainable(env):
    """bitsandbytes' inference repacking (on AVX512-BF16 CPUs) is undone before training:
    by GPart's own forward hook (a loop of the user's own), and by the runners' callback
    before every step (every adapter type, LoRA included). The gradient after an eval pass
    equals a fresh model's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gpart import GPartConfig
    from gpart.runners.quantization import UnpackCpuLayoutCallback

    def model(config):
        base = AutoModelForCausalLM.from_pretrained(
            env["llama"], quantization_config=_bnb_config("nf4")
        )
        return get_peft_model(base, config)

    def grad(m):
        m.train()
        m(input_ids=IDS, labels=IDS).loss.backward()
        g = [p.grad.clone() for p in m.parameters() if p.requires_grad]
        m.zero_grad()
        return g

    def packed(m):
        layers = [x for x in m.modules() if isinstance(x, bnb.nn.Linear4bit)]
        return [getattr(x.weight.quant_state, "packing_format_for_cpu", False) for x in layers]

    def evaluate(m):
        m.eval()
        with torch.no_grad():
            m(input_ids=IDS)  # repacks where the CPU has the kernel

    m = model(GPartConfig(d=256, target_modules=["q_proj"], init_bound=0.05))
    fresh = grad(m)
    evaluate(m)
    torch.testing.assert_close(grad(m), fresh)  # GPart's hook restored the layout
    assert not any(packed(m))

    m = model(LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    fresh = grad(m)
    evaluate(m)
    UnpackCpuLayoutCallback().on_step_begin(None, None, None, model=m)
    assert not any(packed(m))
    # LoRA's base forward is bitsandbytes' own 4-bit kernel, whose path after the restore
    # rounds differently (4e-5 at most here); without it the step fails or the lower
    # layers get no gradient at all.
    torch.testing.assert_close(grad(m), fresh, atol=2e-4, rtol=1e-3)


def test_glue_trains_a_4bit_encoder_with_a_float_head_through_evaluations(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from gpart.configs import resolve_experiment
    from gpart.runners.quantization import quantization_config

    data = write_glue_data(tmp_path / "data", tasks=("sst2",))
    model = write_tiny_model(tmp_path / "roberta", "roberta", **BNB_WIDE)
    out = tmp_path / "logs"
    # best-model selection evaluates every epoch, between training steps
    argv = ["--adapter_type", "gpart", "--tasks", "sst2", "--base_model", str(model),
            "--data_dir", str(data), "--output_dir", str(out), "training.epochs", "2",
            "task.epochs", "2", "training.batch_size", "16", "training.max_seq_length", "32",
            "training.num_workers", "0", "adapter.d", "256", "model.quantization", "nf4"]  # fmt: skip
    assert glue_runner.main(argv) == 0
    (run,) = [p.parent for p in out.rglob("results.json")]
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in evals if "eval_loss" in e][:1] == [1.0]  # between epochs
    cfg = resolve_experiment(
        tasks="sst2", overrides={"model.base_model": str(model), "model.quantization": "nf4"}
    )
    qc = quantization_config(cfg, AutoModelForSequenceClassification, torch.float32)
    base = AutoModelForSequenceClassification.from_pretrained(
        model, num_labels=2, quantization_config=qc
    )
    assert "classifier" in qc.llm_int8_skip_modules
    assert type(base.classifier.out_proj) is torch.nn.Linear  # the head trains in float
    assert isinstance(base.roberta.encoder.layer[0].attention.self.query, bnb.nn.Linear4bit)


def test_the_vision_runner_trains_a_4bit_vit(tmp_path):
    data = tmp_path / "data"
    write_image_folder(data / "eurosat", sizes=(("train", 4), ("validation", 2), ("test", 2)))
    vit = write_tiny_vit(tmp_path / "vit", **BNB_WIDE)
    out = tmp_path / "logs"
    argv = ["--adapter_type", "gpart", "--tasks", "eurosat", "--base_model", str(vit),
            "--data_dir", str(data), "--output_dir", str(out), "training.epochs", "1",
            "training.batch_size", "8", "training.num_workers", "0", "data.image_size", "32",
            "training.precision", "fp32", "adapter.d", "256", "model.quantization", "fp4"]  # fmt: skip
    assert vision_runner.main(argv) == 0
    (run,) = [p.parent for p in out.rglob("results.json")]
    assert 0 <= json.loads((run / "results.json").read_text())["test"]["accuracy"] <= 1


def test_missing_bitsandbytes_is_one_line_naming_the_extra(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` fails
    with pytest.raises(SystemExit) as exc:
        _math(env, tmp_path / "logs", "model.quantization", "nf4")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.quantization nf4: needs bitsandbytes" in err and "uv sync --extra quant" in err
    assert not (tmp_path / "logs").exists()


def test_adapters_that_train_base_tensors_are_refused(env, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        math_runner.main(["--adapter_type", "full", "--base_model", str(env["llama"]),
                          "--data_dir", str(env["data"].parents[1]), "--output_dir",
                          str(tmp_path / "logs"), "model.quantization", "nf4"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "model.quantization nf4: --adapter_type full trains the base model's own" in err


def test_eval_math_merges_a_4bit_run_into_its_dequantized_base(env, tmp_path):
    from gpart.runners.eval_source import load_for_generation, resolve_source

    out = tmp_path / "logs"
    assert _math(env, out, "model.quantization", "nf4") == 0
    (run,) = [p.parent for p in out.rglob("results.json")]
    source = resolve_source(str(run), None, None)
    _, merged, dtype = load_for_generation(source, torch.device("cpu"))
    assert dtype == "float32" and not any(
        isinstance(m, bnb.nn.Linear4bit) for m in merged.modules()
    )
    want = _logits(_adapted(env["llama"], run, "nf4"))
    err = (_logits(merged) - want).abs().max()
    # W0 is the 4-bit codes, not the float checkpoint's weights: the adapter merged into
    # those is much further off. (bitsandbytes' CPU kernel computes the 4-bit model's other
    # layers in bf16 at inference, hence no tighter match.)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    float_base = AutoModelForCausalLM.from_pretrained(env["llama"], dtype=torch.float32)
    wrong = PeftModel.from_pretrained(float_base, run / "adapter").merge_and_unload().eval()
    assert err < 1e-2 and err < (_logits(wrong) - want).abs().max() / 5, err
