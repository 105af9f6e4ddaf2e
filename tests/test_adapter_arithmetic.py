"""`add_weighted_adapter` on GPart: combinations of theta, exact in weight space; refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model

from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer
from tiny_models import ConvNet, tiny_gpt2, tiny_roberta, tokens

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("a0", "a1", "a2")


def _adapters(base, names=NAMES, **config):
    """A peft model holding one adapter per name, all with `config` and random thetas."""
    config = {"d": 64, "init_bound": 0.2, **config}
    model = get_peft_model(base, GPartConfig(**config), adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, GPartConfig(**config))
    return model


def _theta(model, name):
    return model.base_model.gpart_theta_d[name].detach()


def _merged_weights(model, name):
    """{layer: (weight, bias)} of every adapted layer with adapter `name` merged."""
    model.base_model.merge_adapter([name])
    weights = {}
    for key, layer in model.named_modules():
        if isinstance(layer, GPartLayer):
            base = layer.get_base_layer()
            bias = getattr(base, "bias", None)  # Embedding has none
            weights[key] = (base.weight.detach().clone(), None if bias is None else bias.clone())
    model.base_model.unmerge_adapter()
    return weights


LAYOUTS = {
    # nn.Linear with the biases in the space
    "roberta-gpart_only-bias": (tiny_roberta, dict(bias="gpart_only")),
    # Conv1D, one space per block, stratified ids
    "gpt2-blocks-balanced": (
        tiny_gpt2,
        dict(partition_scope="transformer_block", grouping_strategy="balanced"),
    ),
    # Conv2d and Embedding, the seeded-stream ids stored per layer
    "convnet-materialized": (
        ConvNet,
        dict(d=40, target_modules=["patch", "emb", "head"], assignment_backend="materialized"),
    ),
    "gpt2-fastfood": (tiny_gpt2, dict(projection_type="fastfood")),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_linear_combination_is_the_weighted_sum_of_the_weight_updates(layout):
    build, config = LAYOUTS[layout]
    model = _adapters(build(), **config)
    weights = [0.7, -0.2, 0.5]  # sum to one: a soup, with a subtracted task
    model.add_weighted_adapter(list(NAMES), weights, "mix", combination_type="linear")
    expected = sum(w * _theta(model, n) for w, n in zip(weights, NAMES, strict=True))
    torch.testing.assert_close(_theta(model, "mix"), expected, rtol=0, atol=1e-6)
    layers = [m for m in model.modules() if isinstance(m, GPartLayer)]
    for layer in layers:
        deltas = [layer.get_delta_weight(n) for n in NAMES]
        dw = sum(w * d for w, d in zip(weights, deltas, strict=True))
        assert dw.abs().max() > 0
        torch.testing.assert_close(layer.get_delta_weight("mix"), dw, rtol=0, atol=1e-6)
        if layer.gpart_slot["mix"].bias_numel:
            db = sum(w * layer.get_delta_bias(n) for w, n in zip(weights, NAMES, strict=True))
            torch.testing.assert_close(layer.get_delta_bias("mix"), db, rtol=0, atol=1e-6)
    # The merged model's weights are the same soup of the adapters' merged weights.
    merged = {n: _merged_weights(model, n) for n in (*NAMES, "mix")}
    for key, (w_mix, b_mix) in merged["mix"].items():
        soup = sum(w * merged[n][key][0] for w, n in zip(weights, NAMES, strict=True))
        torch.testing.assert_close(w_mix, soup, rtol=0, atol=1e-6)
        if b_mix is not None:
            soup_b = sum(w * merged[n][key][1] for w, n in zip(weights, NAMES, strict=True))
            torch.testing.assert_close(b_mix, soup_b, rtol=0, atol=1e-6)


def test_the_combination_is_added_frozen_and_not_activated():
    model = _adapters(tiny_roberta(), names=("a0", "a1"))
    x = tokens()
    before = model(input_ids=x).logits
    model.add_weighted_adapter(["a0", "a1"], [0.5, 0.5], "soup")
    assert model.active_adapters == ["a0"]
    assert torch.equal(model(input_ids=x).logits, before)
    assert not model.base_model.gpart_theta_d["soup"].requires_grad
    assert model.base_model.gpart_theta_d["a0"].requires_grad
    model.set_adapter("soup")
    assert not torch.allclose(model(input_ids=x).logits, before)


# Independent of peft's code: the TIES, DARE and magnitude-pruning papers' steps on vectors.
def _trim(theta, density):
    kept = torch.zeros_like(theta)
    top = theta.abs().topk(int(density * theta.numel())).indices
    kept[top] = theta[top]
    return kept


def _elect_and_merge(pruned, weights, method):
    stacked = torch.stack(pruned)
    signs = stacked.sign()
    votes = stacked.sum(0) if method == "total" else signs.sum(0)
    elected = torch.where(votes >= 0, 1.0, -1.0)
    agree = (signs == elected).float()
    weighted = torch.tensor(weights)[:, None] * stacked
    return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)


def _drop(thetas, density, seed):
    # DARE keeps each entry with probability `density` (torch.bernoulli from the global RNG,
    # one adapter after the other) and rescales by 1/density.
    torch.manual_seed(seed)
    return [t * torch.bernoulli(torch.full_like(t, density)) / density for t in thetas]


WEIGHTS = [1.0, -0.5, 0.8]
DENSITY = 0.25


@pytest.mark.parametrize("method", ["total", "frequency"])
def test_ties_is_computed_on_theta(method):
    model = _adapters(tiny_roberta())
    thetas = [_theta(model, n) for n in NAMES]
    model.add_weighted_adapter(
        list(NAMES), WEIGHTS, "ties", "ties", density=DENSITY, majority_sign_method=method
    )
    expected = _elect_and_merge([_trim(t, DENSITY) for t in thetas], WEIGHTS, method)
    assert (expected != 0).sum() >= int(DENSITY * 64)
    torch.testing.assert_close(_theta(model, "ties"), expected, rtol=0, atol=1e-6)


def test_magnitude_prune_is_computed_on_theta():
    model = _adapters(tiny_roberta())
    thetas = [_theta(model, n) for n in NAMES]
    model.add_weighted_adapter(list(NAMES), WEIGHTS, "mp", "magnitude_prune", density=DENSITY)
    expected = sum(w * _trim(t, DENSITY) for w, t in zip(WEIGHTS, thetas, strict=True))
    torch.testing.assert_close(_theta(model, "mp"), expected, rtol=0, atol=1e-6)


def test_dare_is_computed_on_theta_with_masks_from_the_seeded_global_rng():
    model = _adapters(tiny_roberta())
    thetas = [_theta(model, n) for n in NAMES]
    density = 0.5
    torch.manual_seed(123)
    model.add_weighted_adapter(list(NAMES), WEIGHTS, "dl", "dare_linear", density=density)
    dropped = _drop(thetas, density, seed=123)
    expected = sum(w * t for w, t in zip(WEIGHTS, dropped, strict=True))
    torch.testing.assert_close(_theta(model, "dl"), expected, rtol=0, atol=1e-6)

    torch.manual_seed(123)
    model.add_weighted_adapter(list(NAMES), WEIGHTS, "dt", "dare_ties", density=density)
    expected = _elect_and_merge(dropped, WEIGHTS, "total")
    torch.testing.assert_close(_theta(model, "dt"), expected, rtol=0, atol=1e-6)

    # the seed decides the masks: another seed, another combination
    torch.manual_seed(124)
    model.add_weighted_adapter(list(NAMES), WEIGHTS, "dl2", "dare_linear", density=density)
    assert not torch.equal(_theta(model, "dl2"), _theta(model, "dl"))


def test_one_adapter_is_combined_as_asked():
    model = _adapters(tiny_roberta(), names=("a0",))
    model.add_weighted_adapter(["a0"], [2.0], "pruned", "magnitude_prune", density=DENSITY)
    expected = 2.0 * _trim(_theta(model, "a0"), DENSITY)
    torch.testing.assert_close(_theta(model, "pruned"), expected, rtol=0, atol=1e-6)


def _one_line_error(model, match, *args, **kwargs):
    names = list(model.peft_config)
    with pytest.raises(ValueError, match=match) as err:
        model.add_weighted_adapter(*args, **kwargs)
    assert "\n" not in str(err.value)
    assert list(model.peft_config) == names  # nothing was added
    return str(err.value)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("d", dict(d=32)),
        ("proj_seed", dict(proj_seed=7)),
        ("target_modules", dict(target_modules=["query", "key"])),
        ("exclude_modules", dict(target_modules=["query", "value"], exclude_modules=["value"])),
        ("layers_to_transform", dict(target_modules=["query", "value"], layers_to_transform=[0])),
        ("bias", dict(bias="gpart_only")),
        ("grouping_strategy", dict(grouping_strategy="balanced")),
        ("assignment_backend", dict(assignment_backend="materialized")),
        ("partition_scope", dict(partition_scope="transformer_block")),
        ("projection_type", dict(projection_type="fastfood")),
        ("scheme_version", dict(scheme_version=2)),
        ("isometric", dict(isometric=False)),
    ],
)
def test_adapters_on_different_partitions_are_refused_naming_the_field(field, change):
    model = get_peft_model(
        tiny_roberta(), GPartConfig(d=64, target_modules=["query", "value"]), adapter_name="one"
    )
    model.add_adapter(
        "two", GPartConfig(**{"d": 64, "target_modules": ["query", "value"], **change})
    )
    message = _one_line_error(model, f"differ in {field} ", ["one", "two"], [0.5, 0.5], "mix")
    assert "'one' and 'two'" in message


def test_targets_spelled_differently_but_selecting_the_same_modules_combine():
    model = get_peft_model(
        tiny_roberta(), GPartConfig(d=64, init_bound=0.2, target_modules=["query", "value"])
    )
    model.add_adapter("b", GPartConfig(d=64, init_bound=0.2, target_modules=r".*\.(query|value)"))
    model.add_weighted_adapter(["default", "b"], [1.0, 1.0], "sum")
    torch.testing.assert_close(_theta(model, "sum"), _theta(model, "default") + _theta(model, "b"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(combination_type="svd"), "SVD.*use combination_type='linear'"),
        (dict(combination_type="ties_svd", density=0.5), "use combination_type='ties'"),
        (dict(combination_type="cat"), "no rank"),
        (dict(combination_type="average"), "unknown combination_type 'average'.*linear, ties"),
        (dict(adapters=["a0", "nope"]), "adapter 'nope' does not exist; .*'a0', 'a1'"),
        (dict(adapter_name="a1"), "'a1' already exists"),
        (dict(weights=[1.0]), "1 weights for 2 adapters"),
        (dict(combination_type="ties"), "needs density"),
        (dict(combination_type="dare_linear", density=0.0), r"density must be in \(0, 1\]"),
        (dict(density=0.5), "density=0.5 prunes, but combination_type='linear'"),
        (dict(majority_sign_method="frequency"), "only ties and dare_ties"),
        (dict(svd_rank=8), "svd_rank set"),
    ],
)
def test_arguments_that_do_not_apply_are_refused(kwargs, match):
    model = _adapters(tiny_roberta(), names=("a0", "a1"))
    call = {"adapters": ["a0", "a1"], "weights": [1.0, 1.0], "adapter_name": "mix", **kwargs}
    _one_line_error(model, match, **call)


def test_bias_all_is_refused():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, bias="all"))
    model.add_adapter("b", GPartConfig(d=64, bias="gpart_only"))
    _one_line_error(model, "bias='all'.*in place", ["default", "b"], [0.5, 0.5], "mix")


def test_two_trained_copies_of_a_head_are_refused():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, task_type="SEQ_CLS"))
    model.add_adapter("b", GPartConfig(d=64, task_type="SEQ_CLS"))
    _one_line_error(model, "own copy of 'classifier'", ["default", "b"], [0.5, 0.5], "mix")


def test_ids_of_signed_magnitude_on_changed_base_weights_are_refused():
    config = dict(d=64, grouping_strategy="signed_magnitude", assignment_backend="materialized")
    model = get_peft_model(tiny_roberta(), GPartConfig(init_bound=0.2, **config))
    layer = next(m for m in model.modules() if isinstance(m, GPartLayer))
    with torch.no_grad():  # the base weights change, and with them the groups of what follows
        layer.get_base_layer().weight.neg_()
    model.add_adapter("b", GPartConfig(**config))
    _one_line_error(
        model,
        "group ids in .* differ: grouping_strategy=.signed_magnitude.",
        ["default", "b"],
        [0.5, 0.5],
        "mix",
    )
    # the combination's own groups would differ from its source's: refused, nothing left behind
    _one_line_error(
        model,
        "group ids in .* differ: grouping_strategy=.signed_magnitude.",
        ["default"],
        [1.0],
        "carried",
    )
    assert not any("carried" in m.gpart_slot for m in model.modules() if isinstance(m, GPartLayer))


def test_a_head_only_one_adapter_trains_is_carried_and_the_combination_saves(tmp_path):
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, init_bound=0.2, task_type="SEQ_CLS"))
    head = model.base_model.model.classifier.modules_to_save["default"]
    with torch.no_grad():
        head.out_proj.weight.add_(0.5)  # a trained head, unlike the original
    x = tokens()
    expected = model(input_ids=x).logits
    model.add_weighted_adapter(["default"], [1.0], "carried")
    carried = model.base_model.model.classifier.modules_to_save["carried"]
    assert not any(p.requires_grad for p in carried.parameters())
    model.set_adapter("carried")
    assert torch.equal(model(input_ids=x).logits, expected)
    model.save_pretrained(tmp_path, selected_adapters=["carried"])
    loaded = PeftModel.from_pretrained(tiny_roberta(), tmp_path / "carried").eval()
    assert torch.equal(loaded(input_ids=x).logits, expected)


def test_a_combination_saves_and_reloads_to_the_same_logits(tmp_path):
    model = _adapters(tiny_roberta(), bias="gpart_only")
    model.add_weighted_adapter(list(NAMES), WEIGHTS, "ties", "ties", density=0.5)
    model.set_adapter("ties")
    x = tokens()
    expected = model(input_ids=x).logits
    model.save_pretrained(tmp_path, selected_adapters=["ties"])
    loaded = PeftModel.from_pretrained(tiny_roberta(), tmp_path / "ties").eval()
    assert torch.equal(loaded(input_ids=x).logits, expected)
    assert not torch.allclose(tiny_roberta()(input_ids=x).logits, expected)


def test_the_documented_snippet_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "index.md").read_text()
    snippet = next(
        block
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)
        if "add_weighted_adapter" in block
    )
    hub_id = re.search(r'from_pretrained\("([^"]+)"\)', snippet).group(1)
    tiny_gpt2().save_pretrained(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    for seed, name in enumerate(("math", "code")):
        base = tiny_gpt2()
        torch.manual_seed(seed)  # two different thetas
        config = GPartConfig(d=64, init_bound=0.2, task_type="CAUSAL_LM")
        get_peft_model(base, config).save_pretrained(Path("out") / name)
    scope: dict = {}
    exec(snippet.replace(hub_id, str(tmp_path / "base")), scope)
    model = scope["model"].eval()
    theta = model.base_model.gpart_theta_d
    torch.testing.assert_close(theta["soup"], (theta["math"] + theta["code"]) / 2)
    x = tokens()
    expected = model(input_ids=x).logits
    loaded = PeftModel.from_pretrained(tiny_gpt2(), "out/merged/soup").eval()
    assert torch.equal(loaded(input_ids=x).logits, expected)


def test_thetas_kept_in_bf16_combine_in_fp32_and_stay_bf16():
    model = get_peft_model(
        tiny_roberta().to(torch.bfloat16),
        GPartConfig(d=64, init_bound=0.2),
        autocast_adapter_dtype=False,
    )
    model.add_adapter("b", GPartConfig(d=64, init_bound=0.2), autocast_adapter_dtype=False)
    model.add_weighted_adapter(["default", "b"], [0.3, 0.7], "mix")
    sources = [_theta(model, n).float() for n in ("default", "b")]
    expected = (0.3 * sources[0] + 0.7 * sources[1]).to(torch.bfloat16)
    assert _theta(model, "mix").dtype == torch.bfloat16
    assert torch.equal(_theta(model, "mix"), expected)
