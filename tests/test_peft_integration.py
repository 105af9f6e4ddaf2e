"""GPart through stock peft: save/load, merge, adapters management, layer types, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from peft.utils.peft_types import PeftType
from safetensors.torch import load_file
from torch import nn

import gpart
from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer
from tiny_models import ConvNet, tiny_bert, tiny_gpt2, tiny_roberta, tokens

LABELS = torch.tensor([0, 2])


def _theta(model, name="default"):
    return model.base_model.gpart_theta_d[name]


def _train(model, steps=3, lr=5e-2, **batch):
    model.train()
    batch = batch or {"input_ids": tokens(), "labels": LABELS}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model


def _save_base(tmp_path, base):
    path = tmp_path / "base"
    base.save_pretrained(path)
    return path


def test_registered_with_peft():
    assert PeftType("GPART") is PeftType.GPART
    assert "GPART" in [t.value for t in PeftType]
    gpart.register()  # idempotent
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.GPART] is gpart.GPartModel


def test_saved_adapter_holds_only_theta_and_head(tmp_path):
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, task_type="SEQ_CLS"))
    _train(model)
    model.save_pretrained(tmp_path / "ad")
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert config["peft_type"] == "GPART" and config["d"] == 64
    tensors = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    assert tensors["base_model.gpart_theta_d"].shape == (64,)
    assert tensors["base_model.gpart_theta_d"].dtype == torch.float32
    assert {k for k in tensors if "gpart" in k} == {"base_model.gpart_theta_d"}
    assert all(k.startswith("base_model.model.classifier.") for k in tensors if "gpart" not in k)


FRESH_PROCESS_LOAD = textwrap.dedent(
    """
    import sys, torch
    import gpart  # the only thing a user adds
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification
    base_path, x_path = sys.argv[1], sys.argv[2]
    x = torch.load(x_path)
    for adapter, out in zip(sys.argv[3::2], sys.argv[4::2]):
        base = AutoModelForSequenceClassification.from_pretrained(base_path).eval()
        model = PeftModel.from_pretrained(base, adapter).eval()
        torch.save(model(input_ids=x).logits, out)
    """
)

BIASES = ("none", "gpart_only", "all")


def test_save_load_in_fresh_process_gives_identical_logits(tmp_path):
    """Each `bias` mode, saved here and loaded by a fresh interpreter that imports only
    `gpart` besides peft and transformers; one interpreter loads all three adapters (each
    onto a base model of its own): starting one costs more than the rest of the test."""
    x = tokens()
    torch.save(x, tmp_path / "x.pt")
    base_path = _save_base(tmp_path, tiny_roberta())
    expected, argv = {}, []
    for bias in BIASES:
        model = get_peft_model(tiny_roberta(), GPartConfig(d=64, bias=bias, task_type="SEQ_CLS"))
        _train(model)
        expected[bias] = model(input_ids=x).logits
        model.save_pretrained(tmp_path / bias)
        argv += [str(tmp_path / bias), str(tmp_path / f"{bias}.pt")]
    script = tmp_path / "load.py"
    script.write_text(FRESH_PROCESS_LOAD)
    subprocess.run(
        [sys.executable, str(script), str(base_path), str(tmp_path / "x.pt"), *argv],
        check=True,
        capture_output=True,
    )
    for bias in BIASES:
        assert torch.equal(torch.load(tmp_path / f"{bias}.pt"), expected[bias]), bias
    # the base is untouched by loading: a plain base model gives different logits
    plain = tiny_roberta()(input_ids=x).logits
    assert not any(torch.equal(plain, logits) for logits in expected.values())
    # the modes train different things (the bias terms or not): three different models
    assert not torch.equal(expected["none"], expected["gpart_only"])
    assert not torch.equal(expected["none"], expected["all"])


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_load_trainable_and_low_cpu_mem_usage(tmp_path, low_cpu_mem_usage):
    base = tiny_roberta()
    base_path = _save_base(tmp_path, base)
    model = get_peft_model(base, GPartConfig(d=64, init_bound=0.2, task_type="SEQ_CLS"))
    expected = model(input_ids=tokens()).logits
    model.save_pretrained(tmp_path / "ad")
    from transformers import AutoModelForSequenceClassification

    fresh = AutoModelForSequenceClassification.from_pretrained(base_path).eval()
    loaded = PeftModel.from_pretrained(
        fresh, tmp_path / "ad", is_trainable=True, low_cpu_mem_usage=low_cpu_mem_usage
    )
    assert torch.equal(loaded.eval()(input_ids=tokens()).logits, expected)
    assert _theta(loaded).requires_grad and _theta(loaded).device.type == "cpu"
    before = _theta(loaded).detach().clone()
    _train(loaded)
    assert not torch.equal(before, _theta(loaded).detach())


def test_merge_and_unload_with_trained_classifier_head():
    base = tiny_roberta()
    head_before = base.classifier.out_proj.weight.detach().clone()
    model = get_peft_model(base, GPartConfig(d=64, bias="gpart_only", task_type="SEQ_CLS"))
    _train(model)
    x = tokens()
    expected = model(input_ids=x).logits
    merged = model.merge_and_unload()
    assert not any(isinstance(m, GPartLayer) for m in merged.modules())
    assert type(merged).__name__ == "RobertaForSequenceClassification"
    assert not torch.equal(merged.classifier.out_proj.weight, head_before)  # the trained head
    torch.testing.assert_close(merged(input_ids=x).logits, expected, rtol=1e-5, atol=1e-6)


def test_merge_unmerge_and_disable_adapter():
    base = tiny_roberta()
    x = tokens()
    base_logits = base(input_ids=x).logits
    model = get_peft_model(base, GPartConfig(d=64, init_bound=0.3, task_type="SEQ_CLS"))
    adapted = model(input_ids=x).logits
    assert not torch.allclose(adapted, base_logits)
    with model.disable_adapter():
        assert torch.equal(model(input_ids=x).logits, base_logits)
    model.merge_adapter()
    torch.testing.assert_close(model(input_ids=x).logits, adapted, rtol=1e-5, atol=1e-6)
    model.unmerge_adapter()
    torch.testing.assert_close(model(input_ids=x).logits, adapted, rtol=1e-5, atol=1e-6)
    with model.disable_adapter():
        torch.testing.assert_close(model(input_ids=x).logits, base_logits, rtol=1e-5, atol=1e-6)
    assert torch.equal(
        model.unload()(input_ids=x).logits, model.base_model.model(input_ids=x).logits
    )


def test_add_set_delete_adapters(tmp_path):
    base = tiny_roberta()
    x = tokens()
    model = get_peft_model(
        base, GPartConfig(d=64, init_bound=0.3, proj_seed=1, task_type="SEQ_CLS")
    )
    first = model(input_ids=x).logits
    model.add_adapter("other", GPartConfig(d=32, init_bound=0.3, proj_seed=2, task_type="SEQ_CLS"))
    assert torch.equal(model(input_ids=x).logits, first)  # still the active one
    model.set_adapter("other")
    second = model(input_ids=x).logits
    assert not torch.allclose(first, second)
    assert _theta(model, "other").requires_grad and not _theta(model, "default").requires_grad
    assert _theta(model, "other").shape == (32,)
    model.save_pretrained(tmp_path / "both")
    assert (tmp_path / "both" / "other" / "adapter_model.safetensors").exists()
    model.set_adapter("default")
    model.delete_adapter("other")
    assert "other" not in model.base_model.gpart_theta_d
    assert "other" not in model.peft_config
    assert torch.equal(model(input_ids=x).logits, first)


def test_trainable_parameter_count_is_d_plus_head(capsys):
    model = get_peft_model(tiny_roberta(), GPartConfig(d=100, task_type="SEQ_CLS"))
    head = sum(p.numel() for n, p in model.named_parameters() if "modules_to_save" in n)
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == 100 + head
    model.print_trainable_parameters()
    assert f"trainable params: {100 + head:,}" in capsys.readouterr().out


def test_bias_modes_train_save_and_restore_bias_updates(tmp_path):
    results = {}
    for bias in ("none", "gpart_only", "all"):
        base = tiny_roberta()
        base_path = _save_base(tmp_path / bias, base)
        model = get_peft_model(base, GPartConfig(d=64, bias=bias, task_type="SEQ_CLS"))
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        layer = next(m for m in model.modules() if isinstance(m, GPartLayer))
        _train(model)
        db = layer.get_delta_bias("default")
        results[bias] = (trainable, db)
        model.save_pretrained(tmp_path / bias / "ad")
        from transformers import AutoModelForSequenceClassification

        loaded = PeftModel.from_pretrained(
            AutoModelForSequenceClassification.from_pretrained(base_path), tmp_path / bias / "ad"
        ).eval()
        assert torch.equal(loaded(input_ids=tokens()).logits, model(input_ids=tokens()).logits)
        saved = load_file(tmp_path / bias / "ad" / "adapter_model.safetensors")
        # What was trained is saved, and nothing else (no frozen copy of the head, no
        # adapted bias: theta holds their update). Saved keys drop peft's "base_model.model."
        # and adapter-name parts.
        assert len(saved) == len(trainable), sorted(saved)
        assert not any("original_module" in k for k in saved)
        if bias == "all":
            # other biases train directly and are saved; adapted ones come from theta
            assert any(k.endswith("intermediate.dense.bias") for k in saved)
            assert not any("query" in k and k.endswith("bias") for k in saved)
        # Loaded for inference (is_trainable=False), nothing trains, as with LoRA.
        assert not any(p.requires_grad for p in loaded.parameters())
    assert results["none"][1] is None
    assert results["gpart_only"][1] is not None and results["gpart_only"][1].abs().sum() > 0
    no_head = {n for n in results["gpart_only"][0] if "modules_to_save" not in n}
    assert no_head == {"base_model.gpart_theta_d.default"}  # nothing outside theta
    all_bias = {n for n in results["all"][0] if "modules_to_save" not in n and "gpart" not in n}
    assert all_bias and all(n.endswith(".bias") for n in all_bias)
    assert not any(".query." in n or ".value." in n for n in all_bias)


def test_inference_mode_config_freezes_theta():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, inference_mode=True))
    assert not any(p.requires_grad for p in model.parameters())


def test_gpt2_conv1d_default_targets(tmp_path):
    model = get_peft_model(tiny_gpt2(), GPartConfig(d=128, bias="gpart_only"))
    layers = [n for n, m in model.named_modules() if isinstance(m, GPartLayer)]
    assert layers and all(n.endswith("c_attn") for n in layers)
    assert all(m.fan_in_fan_out for m in model.modules() if isinstance(m, GPartLayer))
    x = tokens(length=8)
    _train(model, input_ids=x, labels=x)
    assert _theta(model).abs().sum() > 0
    with torch.no_grad():
        _theta(model).normal_()
    layer = next(m for m in model.modules() if isinstance(m, GPartLayer))
    assert layer.get_delta_weight("default").shape == layer.get_base_layer().weight.shape
    expected = model(input_ids=x).logits
    torch.testing.assert_close(
        model.merge_and_unload()(input_ids=x).logits, expected, rtol=1e-5, atol=1e-5
    )


def test_conv2d_and_embedding_targets():
    net = ConvNet()
    images, toks = torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2, 5))
    base_out = net(images, toks)
    model = get_peft_model(
        net, GPartConfig(d=40, target_modules=["patch", "emb"], bias="gpart_only")
    )
    assert isinstance(model.base_model.model.patch, GPartLayer)
    assert isinstance(model.base_model.model.emb, GPartLayer)
    assert torch.equal(model(images, toks), base_out)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    for _ in range(2):
        model(images, toks).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    out = model(images, toks)
    assert not torch.allclose(out, base_out)
    # P^T grad: finite differences of the loss along theta agree with autograd
    theta = _theta(model)
    loss = model(images, toks).pow(2).sum()
    (grad,) = torch.autograd.grad(loss, theta)
    direction = torch.randn_like(theta)
    eps = 1e-3
    with torch.no_grad():
        theta += eps * direction
        up = model(images, toks).pow(2).sum()
        theta -= 2 * eps * direction
        down = model(images, toks).pow(2).sum()
        theta += eps * direction
    torch.testing.assert_close(
        (up - down) / (2 * eps), (grad * direction).sum(), rtol=2e-2, atol=1e-3
    )
    torch.testing.assert_close(model.merge_and_unload()(images, toks), out, rtol=1e-5, atol=1e-5)


def _directional_check(model, theta, loss_fn, eps=1e-6):
    """Autograd's theta gradient against a central difference along a random direction."""
    (grad,) = torch.autograd.grad(loss_fn(), theta)
    direction = torch.randn_like(theta)
    with torch.no_grad():
        theta += eps * direction
        up = loss_fn()
        theta -= 2 * eps * direction
        down = loss_fn()
        theta += eps * direction
    torch.testing.assert_close((up - down) / (2 * eps), (grad * direction).sum(), rtol=1e-6, atol=0)


def test_gradient_with_padding_idx_embedding_and_reflect_padded_conv():
    # padding_idx only zeroes the padding row's weight gradient in torch, but GPart's dW of
    # that row reaches the output: theta's gradient must include it. A non-zero
    # padding_mode is padded explicitly, as nn.Conv2d does.
    net = ConvNet().double()
    net.emb = nn.Embedding(10, 8, padding_idx=1).double()
    net.patch = nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect").double()
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    toks = torch.tensor([[1, 1, 4, 5, 1], [2, 1, 1, 7, 9]])
    base_out = net(images, toks)
    model = get_peft_model(net, GPartConfig(d=40, target_modules=["patch", "emb"], init_bound=0.3))
    # theta is fp32 by design; in float64 here so the difference quotient is exact enough.
    model.base_model.gpart_theta_d["default"] = nn.Parameter(_theta(model).detach().double())
    with gpart.tuner.fused.forced("off"):
        theta = _theta(model)
        _directional_check(model, theta, lambda: model(images, toks).pow(2).sum())
        out = model(images, toks)
        assert not torch.allclose(out, base_out)
        torch.testing.assert_close(model.merge_and_unload()(images, toks), out)


def test_bf16_merge_is_exactly_the_forward_weight():
    from gpart.tuner.ops import merged_weight

    base = tiny_bert().to(torch.bfloat16)
    model = get_peft_model(base, GPartConfig(d=64, init_bound=0.5, task_type="SEQ_CLS"))
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, GPartLayer)]
    used = [merged_weight(m.get_base_layer().weight, None, m._active_terms())[0] for m in layers]
    x = tokens()
    expected = model(input_ids=x).logits
    model.merge_adapter()
    # One rounding of the fp32 sum, exactly as the forward builds W (not W0 + bf16(dW)).
    for layer, w in zip(layers, used, strict=True):
        assert torch.equal(layer.get_base_layer().weight, w)
    assert torch.equal(model(input_ids=x).logits, expected)


def test_bf16_model_trains_with_fp32_theta():
    base = tiny_bert().to(torch.bfloat16)
    model = get_peft_model(base, GPartConfig(d=64, task_type="SEQ_CLS"))
    assert _theta(model).dtype == torch.float32
    model.train()
    loss = model(input_ids=tokens(), labels=torch.tensor([0, 1])).loss
    loss.backward()
    grad = _theta(model).grad
    assert grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0
    assert loss.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"d": 0}, "positive integer"),
        ({"d": -3}, "positive integer"),
        ({"d": None}, "needs `d`"),
        ({"d": 4, "bias": "some"}, "bias must be one of"),
        ({"d": 4, "grouping_strategy": "sorted"}, "grouping_strategy must be one of"),
        ({"d": 4, "assignment_backend": "cached"}, "assignment_backend must be one of"),
        ({"d": 4, "scheme_version": 4}, "scheme_version must be one of"),
        ({"d": 4, "isometric": "no"}, "isometric must be True or False"),
        ({"d": 4, "proj_seed": 1.5}, "proj_seed must be an integer"),
    ],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPartConfig(**kwargs)


def test_d_larger_than_adapted_space_names_the_fix_and_leaves_the_model_as_it_was():
    base = tiny_roberta()
    before = [(n, type(m)) for n, m in base.named_modules()]
    with pytest.raises(ValueError, match=r"larger than the \d+ adapted entries.*choose d <="):
        get_peft_model(base, GPartConfig(d=10**7, task_type="SEQ_CLS"))
    assert [(n, type(m)) for n, m in base.named_modules()] == before
    # A failing add_adapter leaves the existing adapter whole.
    model = get_peft_model(base, GPartConfig(d=64, task_type="SEQ_CLS"))
    layers = [(n, type(m)) for n, m in model.named_modules()]
    with pytest.raises(ValueError, match="larger than"):
        model.add_adapter("big", GPartConfig(d=10**7, target_modules=["key"], task_type="SEQ_CLS"))
    assert [(n, type(m)) for n, m in model.named_modules()] == layers
    assert all("big" not in m.gpart_slot for m in model.modules() if isinstance(m, GPartLayer))
    assert "big" not in model.base_model.gpart_theta_d
    model(input_ids=tokens())


@pytest.mark.parametrize("name", ["copy", "keys", "train"])
def test_adapter_named_like_a_dict_method_is_refused_and_loses_nothing(name):
    # theta lives in an nn.ParameterDict keyed by adapter name, which cannot hold its own
    # attribute names: refused up front, by name, with the existing adapter untouched.
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, init_bound=0.3, task_type="SEQ_CLS"))
    before = model(input_ids=tokens()).logits
    with pytest.raises(ValueError, match=f"adapter name '{name}'.*choose another name"):
        model.add_adapter(name, GPartConfig(d=32, task_type="SEQ_CLS"))
    assert name not in model.peft_config and name not in model.base_model.gpart_theta_d
    assert torch.equal(model(input_ids=tokens()).logits, before)
    with pytest.raises(ValueError, match=f"adapter name '{name}'"):
        get_peft_model(tiny_roberta(), GPartConfig(d=64), adapter_name=name)


def test_empty_groups_are_warned_about():
    # 4 query/value layers of 32x32 + bias = 4,224 entries: d=3,000 leaves groups empty.
    with pytest.warns(UserWarning, match=r"groups are empty.*grouping_strategy='balanced'"):
        get_peft_model(tiny_roberta(), GPartConfig(d=3000, bias="gpart_only"))
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*groups are empty")
        get_peft_model(
            tiny_roberta(), GPartConfig(d=3000, bias="gpart_only", grouping_strategy="balanced")
        )


def test_unknown_layer_type_is_named():
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            return self.norm(self.lin(x))

    with pytest.raises(ValueError, match=r"'norm' of type LayerNorm.*supported types"):
        get_peft_model(WithNorm(), GPartConfig(d=4, target_modules=["norm"]))


def test_targets_matching_nothing():
    with pytest.raises(
        ValueError,
        match=r"matched no module of RobertaForSequenceClassification.*query, token_type_embeddings, value",
    ):
        get_peft_model(
            tiny_roberta(), GPartConfig(d=4, target_modules=["nope"], task_type="SEQ_CLS")
        )


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"target_modules": "all-linear"}, 12),
        ({"target_modules": ["query", "value"], "layers_to_transform": [1]}, 2),
        ({"target_modules": "all-linear", "exclude_modules": ["key"]}, 10),
        ({"target_modules": r".*layer\.0.*\.(query|key)"}, 2),
    ],
)
def test_target_selection(kwargs, expected):
    model = get_peft_model(tiny_roberta(), GPartConfig(d=16, task_type="SEQ_CLS", **kwargs))
    layers = [m for m in model.modules() if isinstance(m, GPartLayer)]
    assert len(layers) == expected
    # the layout covers every adapted entry exactly once, in model order
    offsets = [m.gpart_slot["default"].offset for m in layers]
    sizes = [m.gpart_slot["default"].numel for m in layers]
    assert offsets == [sum(sizes[:i]) for i in range(len(sizes))]
    assert model.base_model.gpart_shared.partitions["default"].total == sum(sizes)


def test_config_defaults_are_the_documented_ones():
    cfg = GPartConfig(d=8)
    assert (cfg.gpart_dropout, cfg.isometric, cfg.proj_seed, cfg.init_bound) == (0.0, True, 42, 0.0)
    assert (cfg.bias, cfg.grouping_strategy, cfg.assignment_backend) == (
        "none",
        "random",
        "stateless",
    )
    assert (cfg.projection_type, cfg.partition_scope, cfg.scheme_version) == (
        "partition",
        "global",
        3,
    )
    assert cfg.target_modules is None and cfg.exclude_modules is None
    assert cfg.modules_to_save is None and cfg.layers_to_transform is None
    assert cfg.peft_type == PeftType.GPART


# ---------------------------------------------------------------- peft's conventions


def test_layers_report_in_and_out_features_as_peft_layers_do():
    from peft.tuners.lora import LoraLayer

    # One of every type GPart adapts, compared with what peft's LoRA reports for it.
    gpt2 = tiny_gpt2()
    for base, targets in ((tiny_roberta(), ["query"]), (gpt2, ["c_attn"]), (ConvNet(), None)):
        kw = {"target_modules": targets or ["patch", "emb", "head"]}
        gp = get_peft_model(base, GPartConfig(d=16, **kw))
        ours = {
            n: (m.in_features, m.out_features)
            for n, m in gp.named_modules()
            if isinstance(m, GPartLayer)
        }
        gp.unload()
        from peft import LoraConfig

        lo = get_peft_model(base, LoraConfig(r=2, **kw))
        theirs = {
            n: (m.in_features, m.out_features)
            for n, m in lo.named_modules()
            if isinstance(m, LoraLayer)
        }
        assert ours == theirs and all(None not in v for v in ours.values())
        lo.unload()


def test_delete_adapter_forgets_every_per_adapter_entry():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=32, bias="gpart_only"))
    model.add_adapter("other", GPartConfig(d=16, bias="gpart_only"))
    model.delete_adapter("other")
    for layer in (m for m in model.modules() if isinstance(m, GPartLayer)):
        for attr in layer.other_param_names:
            assert "other" not in getattr(layer, attr), attr
        assert layer.gpart_adapt_bias == {"default": True}


@pytest.mark.parametrize("is_trainable", [False, True])
def test_loading_an_adapter_keeps_the_other_adapters_trainability(tmp_path, is_trainable):
    model = get_peft_model(tiny_roberta(), GPartConfig(d=32, init_bound=0.1))
    model.save_pretrained(tmp_path)
    model = PeftModel.from_pretrained(tiny_roberta(), tmp_path, is_trainable=is_trainable)
    model.load_adapter(tmp_path, adapter_name="other", is_trainable=is_trainable)
    model.load_adapter(tmp_path, adapter_name="opposite", is_trainable=not is_trainable)
    flags = {n: p.requires_grad for n, p in model.base_model.gpart_theta_d.items()}
    assert flags == {"default": is_trainable, "other": is_trainable, "opposite": not is_trainable}


def test_bias_all_under_fsdp_saves_the_directly_trained_biases():
    import torch.distributed as dist
    from peft import get_peft_model_state_dict
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    model = get_peft_model(tiny_bert(), GPartConfig(d=32, bias="all", task_type="SEQ_CLS"))
    plain = set(get_peft_model_state_dict(model))
    assert any(k.endswith("intermediate.dense.bias") for k in plain)
    # One process, as peft's own FSDP tests set it up.
    dist.init_process_group(backend="gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        wrapped = FSDP(model, use_orig_params=True, device_id="cpu")
        assert set(get_peft_model_state_dict(wrapped)) == plain
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_adapter_dtype_false_keeps_theta_in_the_base_dtype(tmp_path, dtype):
    base = tiny_bert().to(dtype)
    model = get_peft_model(base, GPartConfig(d=32, init_bound=0.1), autocast_adapter_dtype=False)
    model.add_adapter("other", GPartConfig(d=16), autocast_adapter_dtype=False)
    assert {p.dtype for p in model.base_model.gpart_theta_d.values()} == {dtype}
    model.train()
    model(input_ids=tokens(), labels=torch.tensor([0, 1])).loss.backward()
    assert _theta(model).grad.dtype == dtype and _theta(model).grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    fresh = tiny_bert().to(dtype)
    assert (
        PeftModel.from_pretrained(fresh, tmp_path).base_model.gpart_theta_d["default"].dtype
        == torch.float32
    )  # the default, autocast_adapter_dtype=True
    fresh = tiny_bert().to(dtype)
    loaded = PeftModel.from_pretrained(fresh, tmp_path, autocast_adapter_dtype=False)
    assert torch.equal(_theta(loaded), _theta(model).detach())


def test_gpart_only_bias_adapters_coexist_but_only_one_bias_all():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=32, bias="gpart_only"))
    model.add_adapter("second", GPartConfig(d=16, bias="gpart_only"))  # each in its own theta
    model.add_adapter("third", GPartConfig(d=16, bias="all"))
    with pytest.raises(ValueError, match=r"\['third', 'fourth'\] all use bias='all'"):
        model.add_adapter("fourth", GPartConfig(d=16, bias="all"))
