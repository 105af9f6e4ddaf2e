"""TRL's `SFTTrainer` trains and saves a GPart adapter given as ``peft_config``, as it does a
LoRA one: nothing of gpart is needed but the config (and ``import gpart``, which registers
the method with peft).

A two-layer Llama built from its config and a byte-level BPE tokenizer are saved to a
temporary directory (`math_env.write_tiny_decoder`), the dataset is a handful of in-memory
"text" rows; TRL tokenises, collates and runs `transformers.Trainer` itself.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from gpart import GPartConfig
from math_env import rows, write_tiny_decoder

trl = pytest.importorskip("trl")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _texts(n: int) -> list[dict[str, str]]:
    return [{"text": f"{r['query']} {r['response']}"} for r in rows(n)]


def test_sft_trainer_trains_saves_and_reloads_a_gpart_adapter(tmp_path):
    from datasets import Dataset

    base_dir = write_tiny_decoder(tmp_path / "base", "llama")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.pad_token = tokenizer.eos_token  # the tiny tokenizer has none, as Llama's
    before = dict(AutoModelForCausalLM.from_pretrained(base_dir).named_parameters())

    args = trl.SFTConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=5e-2,
        max_length=32,
        bf16=False,  # SFTConfig's default is bf16; fp32 keeps the logits comparable below
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        seed=0,
    )
    trainer = trl.SFTTrainer(
        model=str(base_dir),  # loaded by TRL, as the README's hub id is
        args=args,
        train_dataset=Dataset.from_list(_texts(16)),
        processing_class=tokenizer,
        peft_config=GPartConfig(d=128, target_modules=TARGETS, task_type="CAUSAL_LM"),
    )
    model = trainer.model
    assert isinstance(model, PeftModel) and model.peft_config["default"].peft_type == "GPART"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["base_model.gpart_theta_d.default"]  # theta only: d numbers
    assert model.get_base_model().dtype == torch.float32
    theta = model.base_model.gpart_theta_d["default"]
    assert torch.count_nonzero(theta) == 0  # init_bound=0: training starts at the base model

    trainer.train()
    assert trainer.state.global_step == 4
    assert torch.count_nonzero(theta) == theta.numel()  # every group got a gradient step
    # The base weights are untouched (dW is computed per forward, never written into W0).
    after = dict(model.get_base_model().named_parameters())
    for name, value in before.items():
        key = name
        if key not in after:  # adapted layers hold W0 as `<layer>.base_layer.weight`
            key = name.rsplit(".", 1)[0] + ".base_layer." + name.rsplit(".", 1)[1]
        torch.testing.assert_close(after[key].detach(), value.detach(), rtol=0, atol=0)

    out = tmp_path / "adapter"
    trainer.save_model(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "GPART" and config["d"] == 128
    saved = load_file(out / "adapter_model.safetensors")  # what peft's own save writes
    assert list(saved) == ["base_model.gpart_theta_d"]
    torch.testing.assert_close(saved["base_model.gpart_theta_d"], theta.detach())

    ids = tokenizer(["What is 12 + 30? 12 + 30 = 42"], return_tensors="pt")["input_ids"]
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert (trained - plain).abs().max() > 1e-3  # the trained adapter changes the model

    # Reloaded with stock peft, as a user would (`import gpart` is done at the top).
    fresh = AutoModelForCausalLM.from_pretrained(base_dir)
    reloaded = PeftModel.from_pretrained(fresh, out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trained)
