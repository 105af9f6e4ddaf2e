"""``--export_merged DIR``: a finished run as a plain transformers model (math runner,
tiny Llama; the flag and `gpart.runners.export` are shared by every runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gpart.runners import math as runner
from math_env import rows, write_jsonl, write_tiny_decoder

FAST = ["training.epochs", "1", "training.batch_size", "4", "training.grad_accum", "1",
        "training.num_workers", "0", "training.precision", "fp32",
        "training.max_seq_length", "64", "data.heldout_samples", "4",
        "training.gradient_checkpointing", "false", "training.lr", "5e-2",
        "training.warmup_ratio", "0", "adapter.d", "256", "adapter.gpart_dropout", "0"]  # fmt: skip
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "trainable.safetensors"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {
        "llama": write_tiny_decoder(root / "llama", "llama"),
        "data": write_jsonl(root / "data" / "metamathqa" / "train.jsonl", rows(16)),
    }


@pytest.fixture(autouse=True)
def token_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPART_CACHE_DIR", str(tmp_path / "cache"))


def _main(env, out, *flags):
    return runner.main(["--adapter_type", "gpart", "--base_model", str(env["llama"]),
                        "--data_dir", str(env["data"].parents[1]), "--output_dir", str(out),
                        *flags, *FAST])  # fmt: skip


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _adapted(env, run: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(env["llama"], dtype=torch.float32)
    return PeftModel.from_pretrained(base, run / "adapter").eval()


def test_export_per_seed_loads_with_transformers_alone_and_matches(env, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, dest = tmp_path / "logs", tmp_path / "merged"
    flags = ["--seed", "1", "2", "--export_merged", str(dest), "--export_dtype", "fp32"]
    assert _main(env, out, *flags) == 0
    ids = torch.tensor([[0, 5, 17, 42, 99, 120, 7, 3]])
    base = _logits(AutoModelForCausalLM.from_pretrained(env["llama"]).eval(), ids)
    for seed in (1, 2):
        target = dest / "metamathqa" / f"seed_{seed}"
        files = {p.name for p in target.iterdir()}
        assert not files & ADAPTER_FILES and {"config.json", "model.safetensors"} <= files
        assert "gpart" not in (target / "config.json").read_text().lower()
        (run,) = out.glob(f"*/metamathqa/seed_{seed}")
        info = json.loads((target / "gpart_export.json").read_text())
        assert info["run_dir"] == str(run.resolve()) and info["dtype"] == "fp32"
        exported = AutoModelForCausalLM.from_pretrained(target).eval()
        assert exported.dtype == torch.float32
        assert AutoTokenizer.from_pretrained(target).pad_token is not None
        want = _logits(_adapted(env, run), ids)
        got = _logits(exported, ids)
        # fp32 merge vs. the adapter's own forward: equal up to float reassociation
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        assert (want - base).abs().max() > 1e-3  # the merge carried a real update
    assert "merged model ->" in capsys.readouterr().out


def test_a_finished_run_exports_in_bf16_without_training_again(env, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out, dest = tmp_path / "logs", tmp_path / "served"
    assert _main(env, out) == 0
    (run,) = out.glob("*/metamathqa/seed_*")
    results = (run / "results.json").read_text()
    capsys.readouterr()
    assert _main(env, out, "--export_merged", str(dest)) == 0  # one run: DIR itself
    assert "already finished" in capsys.readouterr().out
    assert (run / "results.json").read_text() == results  # nothing re-ran
    exported = AutoModelForCausalLM.from_pretrained(dest).eval()
    assert exported.dtype == torch.bfloat16
    ids = torch.tensor([[0, 5, 17, 42, 99, 120, 7, 3]])
    want = _logits(_adapted(env, run), ids)
    got = _logits(exported.float(), ids)
    # bf16 weights round each weight by up to 2**-9 relative; on this tiny model's logits
    # (|logit| < 0.5) that measured 1.1e-3 at most, while the merged update itself moves
    # them by ~0.25: 5e-3 separates the two
    base = _logits(AutoModelForCausalLM.from_pretrained(env["llama"]).eval(), ids)
    assert (want - base).abs().max() > 0.05
    torch.testing.assert_close(got, want, atol=5e-3, rtol=0)


@pytest.mark.parametrize("bad", ["file", "nonempty"])
def test_a_bad_export_dir_is_refused_before_training(env, tmp_path, capsys, bad):
    out = tmp_path / "logs"
    dest = tmp_path / "dest"
    if bad == "file":
        dest.write_text("x")
        message = "is a file; give a directory"
    else:
        dest.mkdir()
        (dest / "keep.txt").write_text("mine")
        message = "is not empty"
    with pytest.raises(SystemExit) as exc:
        _main(env, out, "--export_merged", str(dest))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err and not out.exists()
    assert dest.is_file() or (dest / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("adapter", ["gpart", "bitfit"])
def test_the_glue_runner_exports_a_classifier_too(tmp_path, adapter):
    """The flag is the shared runner's: a GLUE run (peft GPart with its trained head, or
    bitfit's plain trained tensors) exports a sequence classifier that loads with
    `AutoModelForSequenceClassification` alone and gives the trained model's logits."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from glue_env import write_glue_data, write_tiny_model
    from gpart.runners import glue

    data = write_glue_data(tmp_path / "data", tasks=("rte",), n_train=32, n_val=8)
    model = write_tiny_model(tmp_path / "roberta", "roberta")
    out, dest = tmp_path / "logs", tmp_path / "merged"
    argv = ["--adapter_type", adapter, "--tasks", "rte", "--base_model", str(model),
            "--data_dir", str(data), "--output_dir", str(out), "--export_merged", str(dest),
            "--export_dtype", "fp32", "training.epochs", "1", "task.epochs", "1",
            "training.batch_size", "16", "training.max_seq_length", "32",
            "training.num_workers", "0", "training.model_selection", "last"]  # fmt: skip
    if adapter == "gpart":
        argv += ["adapter.d", "512"]
    assert glue.main(argv) == 0
    (run,) = out.glob("*/rte/seed_*")
    files = {p.name for p in dest.iterdir()}
    assert not files & ADAPTER_FILES and "tokenizer.json" in files

    base = AutoModelForSequenceClassification.from_pretrained(model).eval()
    if adapter == "gpart":
        trained = PeftModel.from_pretrained(base, run / "adapter").eval()
    else:
        base.load_state_dict(load_file(run / "adapter" / "trainable.safetensors"), strict=False)
        trained = base
    exported = AutoModelForSequenceClassification.from_pretrained(dest).eval()
    ids = torch.tensor([[0, 7, 9, 11, 2, 2, 13, 8, 2]])
    torch.testing.assert_close(_logits(exported, ids), _logits(trained, ids), atol=1e-5, rtol=1e-5)
    fresh = AutoModelForSequenceClassification.from_pretrained(model).eval()
    assert (_logits(exported, ids) - _logits(fresh, ids)).abs().max() > 1e-4
