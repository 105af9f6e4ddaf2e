"""Bridging every adapter to peft / requires_grad, and training one step on a tiny model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpart.configs import (
    ConfigError,
    apply_adapter,
    get_adapter,
    head_module_names,
    resolve_experiment,
    to_peft_config,
)
from gpart.configs.adapters.gpart import GPartAdapterConfig
from gpart.configs.adapters.lora import LoraAdapterConfig
from gpart.configs.adapters.unilora import UniLoraAdapterConfig

# Sizes that fit the tiny model (hidden 32, 2 layers): query+value hold 2*2*32*32 = 4096
# weights; VB-LoRA's vectors must divide 32.
TINY = {
    "gpart": {"adapter.d": "64"},
    "unilora": {"adapter.theta_d_length": "64"},
    "fourierft": {"adapter.n_frequency": "16"},
    "vblora": {"adapter.vector_length": "16", "adapter.num_vectors": "8"},
}


def _tiny_model(config, num_labels=2, seed=0):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config.num_labels = num_labels
    return AutoModelForSequenceClassification.from_config(config)


def test_peft_config_classes_and_renames():
    import peft

    from gpart import GPartConfig

    expected = {
        "gpart": GPartConfig,
        "lora": peft.LoraConfig,
        "dora": peft.LoraConfig,
        "unilora": peft.UniLoraConfig,
        "vera": peft.VeraConfig,
        "fourierft": peft.FourierFTConfig,
        "vblora": peft.VBLoRAConfig,
    }
    for name, cls in expected.items():
        pc = to_peft_config(get_adapter(name).config_cls(), seed=5, task_type="SEQ_CLS")
        assert type(pc) is cls, name
        assert pc.task_type == "SEQ_CLS"
    g = to_peft_config(
        GPartAdapterConfig(d=100, gpart_dropout=0.25, target_modules=["query"], isometric=False),
        seed=7,
    )
    assert (g.d, g.gpart_dropout, g.target_modules, g.isometric) == (100, 0.25, ["query"], False)
    assert g.proj_seed == 7  # follows the run seed when unset ...
    assert to_peft_config(GPartAdapterConfig(proj_seed=3), seed=7).proj_seed == 3  # ... unless set
    u = to_peft_config(
        UniLoraAdapterConfig(theta_d_length=512, init_theta_d_bound=0.05, unilora_dropout=0.1),
        seed=1,
    )
    assert (u.theta_d_length, u.init_theta_d_bound, u.unilora_dropout, u.proj_seed) == (
        512,
        0.05,
        0.1,
        1,
    )
    lo = to_peft_config(LoraAdapterConfig(r=4, lora_alpha=16, lora_dropout=0.05), seed=0)
    assert (lo.r, lo.lora_alpha, lo.lora_dropout, lo.use_dora) == (4, 16, 0.05, False)
    assert to_peft_config(get_adapter("dora").config_cls(), seed=0).use_dora is True
    assert to_peft_config(get_adapter("vera").config_cls(), seed=11).projection_prng_key == 11
    assert to_peft_config(get_adapter("fourierft").config_cls(), seed=12).random_loc_seed == 12
    assert (
        to_peft_config(LoraAdapterConfig(target_modules=["all-linear"]), seed=0).target_modules
        == "all-linear"
    )


def test_non_peft_adapter_has_no_peft_config():
    with pytest.raises(ConfigError, match="not a peft method"):
        to_peft_config(get_adapter("bitfit").config_cls(), seed=0)


def test_a_section_holds_only_its_peft_configs_fields():
    # A key peft does not know could only be dropped silently; deriving it is refused.
    import peft

    from gpart.configs.schema import adapter_section

    with pytest.raises(TypeError, match="LoraConfig has no field"):
        adapter_section("lora", peft.LoraConfig, ("r", "alpha"))
    lora = adapter_section("lora", peft.LoraConfig, ("r", "lora_alpha"))
    assert [f.name for f in dataclasses.fields(lora)] == [
        "type",
        "target_modules",
        "r",
        "lora_alpha",
    ]
    assert lora().lora_alpha == peft.LoraConfig().lora_alpha  # peft's default


def test_head_module_names(tiny_roberta_config, tiny_bert_config):
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        ViTConfig,
        ViTForImageClassification,
    )

    assert head_module_names(_tiny_model(tiny_roberta_config)) == ["classifier"]
    assert head_module_names(_tiny_model(tiny_bert_config)) == ["classifier"]
    vit = ViTForImageClassification(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=8,
            patch_size=4,
            num_labels=3,
        )
    )
    assert head_module_names(vit, None) == ["classifier"]
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    )
    assert head_module_names(gpt2, "CAUSAL_LM") == []
    with pytest.raises(ValueError, match="pass head_names explicitly"):
        head_module_names(torch.nn.Linear(2, 2))


def _batch(num_labels):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (4, 12), generator=g)
    labels = torch.randn(4, generator=g) if num_labels == 1 else torch.tensor([0, 1, 0, 1])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _train_one_step(model, num_labels):
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model(**_batch(num_labels)).loss
    loss.backward()
    opt.step()
    after = dict(model.named_parameters())
    changed = {n for n, v in trainable.items() if not torch.equal(v, after[n].detach())}
    for n, v in frozen.items():
        assert torch.equal(v, after[n].detach()), f"frozen {n} moved"
    return changed


@pytest.mark.parametrize(
    "adapter",
    ["gpart", "lora", "dora", "unilora", "vera", "fourierft", "vblora", "bitfit", "head", "full"],
)
def test_each_adapter_builds_and_trains_one_step(adapter, tiny_roberta_config):
    exp = resolve_experiment(adapter=adapter, tasks="sst2", overrides=TINY.get(adapter, {}))
    model = apply_adapter(_tiny_model(tiny_roberta_config), exp)
    changed = _train_one_step(model, num_labels=2)
    head = [n for n in changed if ".classifier." in f".{n}."]
    body = [n for n in changed if n not in head]
    assert head, f"{adapter}: head did not train"
    if adapter == "head":
        assert not body
    else:
        assert body, f"{adapter}: adapter parameters did not train"
    if adapter == "bitfit":
        assert all(n.endswith("bias") for n in body)
    if get_adapter(adapter).is_peft:
        from peft import PeftModel

        assert isinstance(model, PeftModel)
        peft_type = {"dora": "LORA"}.get(adapter, adapter.upper())
        assert model.peft_config["default"].peft_type.value == peft_type


def test_gpart_trains_exactly_theta_and_head(tiny_roberta_config):
    exp = resolve_experiment(adapter="gpart", tasks="stsb", overrides={"adapter.d": "96"})
    model = apply_adapter(_tiny_model(tiny_roberta_config, num_labels=1), exp)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    body = sum(v for n, v in trainable.items() if ".classifier." not in f".{n}.")
    assert body == 96
    assert _train_one_step(model, num_labels=1)  # regression head (stsb) works too


def test_bitfit_target_modules_restricts_biases(tiny_bert_config):
    model = _tiny_model(tiny_bert_config)
    cfg = get_adapter("bitfit").config_cls(target_modules=["query"])
    apply_adapter(model, cfg, seed=0)
    body = [
        n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier")
    ]
    assert body and all(n.endswith("query.bias") for n in body)


def test_bitfit_targets_matching_no_bias_are_an_error(tiny_bert_config):
    model = _tiny_model(tiny_bert_config)
    cfg = get_adapter("bitfit").config_cls(target_modules=["qury"])
    with pytest.raises(ConfigError, match=r"\['qury'\] match no module with a bias.*query"):
        apply_adapter(model, cfg, seed=0)


def test_apply_adapter_with_bare_config_needs_seed(tiny_roberta_config):
    with pytest.raises(ValueError, match="pass seed="):
        apply_adapter(_tiny_model(tiny_roberta_config), LoraAdapterConfig())
    model = apply_adapter(
        _tiny_model(tiny_roberta_config), LoraAdapterConfig(target_modules=["query"]), seed=0
    )
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_nothing_to_train_is_an_error():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    )
    with pytest.raises(ConfigError, match="nothing to train"):
        apply_adapter(gpt2, get_adapter("head").config_cls(), task_type="CAUSAL_LM", seed=0)


def test_model_mismatch_is_a_config_error(tiny_roberta_config):
    # d larger than the adapted space, or targets the model lacks: user mistakes (exit 2).
    too_big = resolve_experiment(overrides={"adapter.d": "5000"})  # query+value hold 4096
    with pytest.raises(ConfigError, match=r"^adapter\.d: .*5000"):
        apply_adapter(_tiny_model(tiny_roberta_config), too_big)
    missing = resolve_experiment(adapter="lora", overrides={"adapter.target_modules": "nosuch"})
    with pytest.raises(ConfigError, match=r"^adapter\.target_modules: .*nosuch"):
        apply_adapter(_tiny_model(tiny_roberta_config), missing)


def test_query_value_targets_resolve_per_model_family(tiny_roberta_config):
    from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTForImageClassification

    from gpart.configs.bridge import resolve_targets

    qv = GPartAdapterConfig(d=64, target_modules=["query-value"])
    roberta = _tiny_model(tiny_roberta_config)
    assert resolve_targets(roberta, qv).target_modules == ["query", "value"]
    vit = ViTForImageClassification(
        ViTConfig(
            image_size=16,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=24,
        )  # fmt: skip
    )
    names = {n.rsplit(".", 1)[-1] for n, _ in vit.named_modules()}
    expected = ["q_proj", "v_proj"] if "q_proj" in names else ["query", "value"]
    assert resolve_targets(vit, qv).target_modules == expected  # transformers 5: q_proj
    assert qv.target_modules == ["query-value"]  # the config itself is left alone
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(ConfigError, match="no query/value projections.*c_attn"):
        resolve_targets(gpt2, qv)


def test_targets_that_match_nothing_name_the_linear_layers(tiny_roberta_config):
    cfg = resolve_experiment(
        adapter="lora", tasks="sst2", overrides={"adapter.target_modules": "qkv"}
    )
    with pytest.raises(ConfigError, match=r"linear layers: .*dense.*query.*value"):
        apply_adapter(_tiny_model(tiny_roberta_config), cfg)


def test_auto_precision_is_fp16_only_on_cuda():
    from gpart.runners.common import mixed_precision

    assert mixed_precision("auto") == {"bf16": False, "fp16": torch.cuda.is_available()}
    assert mixed_precision("bf16") == {"bf16": True, "fp16": False}
