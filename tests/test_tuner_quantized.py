"""GPart on bitsandbytes 4-bit and 8-bit bases (QLoRA-style), on CPU.

A tiny Llama is saved to a temporary directory and loaded with transformers'
`BitsAndBytesConfig`, as a user loads a 7B model; bitsandbytes (the `quant` extra, in the
dev group) quantizes and computes, so its own matmul is the reference for the forward.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model
from torch import nn
from torch.nn import functional as F

from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer

bnb = pytest.importorskip("bitsandbytes")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

QUANT = {
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4"),
    "nf4-double": dict(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
    ),
    "int8": dict(load_in_8bit=True),
}
TARGETS = ["q_proj", "v_proj"]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=True,  # biases on q/v, so bias="gpart_only" has something to adapt
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def _load(path, quant):
    kw = dict(QUANT[quant])
    if kw.get("load_in_4bit"):
        kw["bnb_4bit_compute_dtype"] = torch.float32
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(**kw))


def _ids(seed=1):
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(seed))


def _theta(model):
    return model.base_model.gpart_theta_d["default"]


@pytest.mark.parametrize("quant", list(QUANT))
def test_forward_matches_bitsandbytes_and_theta_trains(llama_dir, quant):
    base = _load(llama_dir, quant)
    x = _ids()
    with torch.no_grad():
        expected = base(input_ids=x).logits  # bitsandbytes' own matmuls
    model = get_peft_model(base, GPartConfig(d=256, target_modules=TARGETS, bias="gpart_only"))
    layers = [m for m in model.modules() if isinstance(m, GPartLayer)]
    assert len(layers) == 4 and all(type(m).__name__ == "QuantLinear" for m in layers)
    # The slots cover the layers' real (unpacked) weights and biases.
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q.gpart_slot["default"].weight_numel == 64 * 64 and q.in_features == 64
    with torch.no_grad():
        # bitsandbytes' CPU kernel computes in bf16; ours in the compute dtype (fp32 here)
        torch.testing.assert_close(model(input_ids=x).logits, expected, rtol=1e-2, atol=1e-2)

    # A fresh model to train: bitsandbytes' first inference forward on an AVX512-BF16 CPU
    # repacks Linear4bit weights into a layout its training path then fails on (so does
    # peft's LoRA after an eval pass; not GPart's layers, which dequantize themselves).
    model = get_peft_model(
        _load(llama_dir, quant), GPartConfig(d=256, target_modules=TARGETS, bias="gpart_only")
    )
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(8):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        assert _theta(model).grad.abs().sum() > 0
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"base_model.gpart_theta_d.default"}  # the quantized base stays frozen


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_save_load_and_merge_and_unload_on_a_quantized_base(llama_dir, tmp_path, quant):
    model = get_peft_model(
        _load(llama_dir, quant), GPartConfig(d=256, target_modules=TARGETS, init_bound=0.02)
    ).eval()
    x = _ids()
    with torch.no_grad():
        adapted = model(input_ids=x).logits
        base = model.get_base_model()
        with model.disable_adapter():
            plain = model(input_ids=x).logits
    assert (adapted - plain).abs().max() > 1e-3  # the adapter changes the model
    model.save_pretrained(tmp_path / "ad")
    loaded = PeftModel.from_pretrained(_load(llama_dir, quant), tmp_path / "ad").eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=x).logits, adapted)

    with pytest.warns(UserWarning, match="re-quantizes W0 \\+ dW"):
        merged = model.merge_and_unload()
    assert merged is base
    kind = bnb.nn.Linear8bitLt if quant == "int8" else bnb.nn.Linear4bit
    assert isinstance(merged.model.layers[0].self_attn.q_proj, kind)
    with torch.no_grad():
        out = merged(input_ids=x).logits
    # Re-quantized: close to the adapted model (rounding), nearer to it than to the base.
    err = (out - adapted).abs().max()
    assert err < (out - plain).abs().max() or err < 1e-2, (err, (out - plain).abs().max())


def test_a_layer_gpart_cannot_adapt_is_one_clear_error():
    class PackedLinear(nn.Linear):
        """Another quantizer's layer: an nn.Linear subclass with packed integer storage."""

        def __init__(self):
            super().__init__(8, 4)
            self.weight = nn.Parameter(torch.zeros(16, 1, dtype=torch.uint8), requires_grad=False)

    model = nn.Sequential(nn.Linear(8, 8), PackedLinear())
    with pytest.raises(ValueError, match=r"module '1' of type .*PackedLinear.*uint8 of shape"):
        get_peft_model(model, GPartConfig(d=4, target_modules=["1"]))


def test_the_dequantized_weight_is_not_kept_for_the_backward(llama_dir, monkeypatch):
    import gc
    import weakref

    from gpart.tuner.bnb import QuantLinear

    model = get_peft_model(
        _load(llama_dir, "nf4"), GPartConfig(d=64, target_modules=["q_proj"], init_bound=0.1)
    )
    model.train()
    x = _ids()
    model(input_ids=x, labels=x).loss.backward()
    reference = _theta(model).grad.clone()
    _theta(model).grad = None

    made = []
    original = QuantLinear.dequantized_weight

    def tracked(self):
        w = original(self)
        made.append(weakref.ref(w))
        return w

    monkeypatch.setattr(QuantLinear, "dequantized_weight", tracked)
    loss = model(input_ids=x, labels=x).loss
    gc.collect()
    assert made and all(ref() is None for ref in made)  # only the 4-bit weight is held
    loss.backward()  # dequantizes again, same gradient
    torch.testing.assert_close(_theta(model).grad, reference)


def test_bf16_compute_as_qlora_trains_an_fp32_theta(llama_dir):
    bnb_config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    base = AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=bnb_config, dtype=torch.bfloat16
    )
    model = get_peft_model(base, GPartConfig(d=128, target_modules=TARGETS))
    model.train()
    x = _ids()
    out = model(input_ids=x, labels=x)
    out.loss.backward()
    assert out.logits.dtype == torch.bfloat16
    grad = _theta(model).grad
    assert _theta(model).dtype == grad.dtype == torch.float32 and grad.abs().sum() > 0


@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
def test_a_4bit_base_trains_theta_as_a_float_base_holding_its_codes(llama_dir, compute):
    """All a 4-bit base changes is W0: GPart on NF4 computes the loss, the adapter's output
    and theta's gradient that it computes on a float model holding the same dequantized
    codes (what `transformers`' `dequantize` gives), in the 4-bit layers' compute dtype.

    So a 4-bit run that learns less than its float twin does so because its base is another
    model, not because the adapter path loses precision, scale or gradient on the way
    (docs/math.md, "A 4-bit base", has the comparison on SmolLM2-135M).
    """
    q = BitsAndBytesConfig(**QUANT["nf4-double"], bnb_4bit_compute_dtype=compute)
    quantized = AutoModelForCausalLM.from_pretrained(
        llama_dir, quantization_config=q, dtype=compute
    )
    twin = AutoModelForCausalLM.from_pretrained(llama_dir, quantization_config=q, dtype=compute)
    twin = twin.dequantize(dtype=compute)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in twin.modules())
    config = dict(d=256, target_modules=TARGETS, init_bound=0.05)
    models = []
    for base in (quantized, twin):
        torch.manual_seed(0)  # the same initial theta
        models.append(get_peft_model(base, GPartConfig(**config)).train())
    x = _ids()

    terms, losses, grads = [], [], []
    for model in models:
        layer = model.base_model.model.model.layers[1].self_attn.v_proj
        h = torch.randn(2, 12, 64, generator=torch.Generator().manual_seed(2)).to(compute)
        w0 = layer.weight_in_storage  # a 4-bit layer's: dequantized
        with torch.no_grad():
            terms.append(layer(h).float() - F.linear(h, w0.to(compute)).float())
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(_theta(model).grad.clone())
    assert terms[0].abs().sum() > 0
    # The same W0 and dW on both sides: what differs is summation order and the rounding
    # of the output to the compute dtype.
    exact = compute == torch.float32
    assert rel(terms[0], terms[1]) < (1e-5 if exact else 1e-2)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6 if exact else 1e-3)
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > (1 - 1e-6 if exact else 0.9999)
    assert rel(grads[0], grads[1]) < (1e-4 if exact else 1e-2)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
