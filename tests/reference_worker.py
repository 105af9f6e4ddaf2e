"""Runs the paper authors' GPart code (SamsungLabs/GPart, its vendored peft fork) for
`tests/test_official_reference.py`, in a process of its own with that checkout first on
``PYTHONPATH``, so that ``import peft`` is the fork and ``gpart`` is never imported.

    python reference_worker.py write CASES.json OUT   # adapters the reference code writes
    python reference_worker.py read CASES.json OUT    # the reference code reads ours

CASES.json maps a case name to ``{"kind", "config", "seed"}`` (``config``: the reference's
`GPartConfig` keyword arguments). ``write`` saves, per case, ``OUT/<case>/adapter`` (its
`save_pretrained`, theta filled with random values) and ``OUT/<case>/reference.pt``
(input, logits, per-layer `get_delta_weight`). ``read`` loads ``OUT/<case>/adapter`` (written
by gpart) with the reference's `PeftModel.from_pretrained` and saves the logits it computes
as ``OUT/<case>/reference_read.pt``. Base models come from `build_base`, which the test
imports too, so both sides adapt the same weights.
"""

from __future__ import annotations

import json
import os
import sys

import torch

KINDS = ("roberta", "llama", "qwen2", "gpt2", "vit")


def build_base(kind: str):
    """A tiny model of `kind` with fixed random weights and random nonzero biases."""
    import transformers as tf

    torch.manual_seed(KINDS.index(kind) + 10)
    if kind == "roberta":
        model = tf.RobertaForSequenceClassification(
            tf.RobertaConfig(
                vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=40, num_labels=3,
            )
        )  # fmt: skip
    elif kind == "llama":
        model = tf.LlamaForCausalLM(
            tf.LlamaConfig(
                vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64,
            )
        )  # fmt: skip
    elif kind == "qwen2":
        model = tf.Qwen2ForCausalLM(
            tf.Qwen2Config(
                vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
            )
        )  # fmt: skip
    elif kind == "gpt2":
        model = tf.GPT2LMHeadModel(
            tf.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=40)
        )
    elif kind == "vit":
        model = tf.ViTForImageClassification(
            tf.ViTConfig(
                image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, num_labels=5,
            )
        )  # fmt: skip
    else:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.02)
    return model.eval()


def model_input(kind: str) -> dict:
    g = torch.Generator().manual_seed(123)
    if kind == "vit":
        return {"pixel_values": torch.randn(2, 3, 16, 16, generator=g)}
    ids = torch.randint(3, 100, (2, 9), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _write(cases: dict, out: str) -> None:
    from peft import GPartConfig, get_peft_model
    from peft.tuners.gpart.layer import GPartLayer

    for case, spec in cases.items():
        model = get_peft_model(build_base(spec["kind"]), GPartConfig(**spec["config"]))
        d = spec["config"]["d"]
        g = torch.Generator().manual_seed(spec["seed"])
        with torch.no_grad():
            model.base_model.gpart_theta_d["default"].copy_(torch.randn(d, generator=g) * 0.5)
        model.eval()
        x = model_input(spec["kind"])
        with torch.no_grad():
            logits = model(**x).logits
            deltas = {
                n: m.get_delta_weight("default").detach().clone()
                for n, m in model.named_modules()
                if isinstance(m, GPartLayer)
            }
        model.save_pretrained(os.path.join(out, case, "adapter"))
        torch.save(
            {"input": x, "logits": logits, "deltas": deltas},
            os.path.join(out, case, "reference.pt"),
        )


def _read(cases: dict, out: str) -> None:
    from peft import PeftModel

    for case, spec in cases.items():
        model = PeftModel.from_pretrained(
            build_base(spec["kind"]), os.path.join(out, case, "adapter")
        ).eval()
        x = model_input(spec["kind"])
        with torch.no_grad():
            logits = model(**x).logits
        torch.save({"logits": logits}, os.path.join(out, case, "reference_read.pt"))


if __name__ == "__main__":
    import peft

    if "site-packages" in peft.__file__:
        sys.exit(f"peft is not the reference fork: {peft.__file__}; put its checkout first")
    mode, cases_file, out_dir = sys.argv[1:4]
    with open(cases_file) as f:
        specs = json.load(f)
    {"write": _write, "read": _read}[mode](specs, out_dir)
