"""The ablation options of the one GPart tuner: partition_scope, signed_magnitude, fastfood.

Each option keeps the saved format (theta + head), reloads and merges exactly, and has an
exact theta gradient; partition variants are exactly isometric, Fastfood in expectation.
"""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from torch import nn

import gpart
import gpart.tuner.fastfood as fastfood
from gpart import GPartConfig
from gpart.tuner.fastfood import FastfoodProjection, fwht
from gpart.tuner.groupings import signed_magnitude_ids
from gpart.tuner.layer import GPartLayer
from gpart.tuner.model import EXTRA_BLOCK
from gpart.tuner.scope import ScopedPartition, block_seed
from tiny_models import ConvNet, tiny_bert, tiny_roberta, tokens

OPTIONS = {
    "block": dict(partition_scope="transformer_block"),
    "block_balanced": dict(partition_scope="transformer_block", grouping_strategy="balanced"),
    "block_materialized": dict(
        partition_scope="transformer_block", assignment_backend="materialized"
    ),
    "signed": dict(grouping_strategy="signed_magnitude", assignment_backend="materialized"),
    "signed_block": dict(
        grouping_strategy="signed_magnitude",
        assignment_backend="materialized",
        partition_scope="transformer_block",
    ),
    "fastfood": dict(projection_type="fastfood"),
    "fastfood_anisotropic": dict(projection_type="fastfood", isometric=False),
    "fastfood_block": dict(
        projection_type="fastfood", partition_scope="transformer_block", scheme_version=1
    ),
}
PARTITION_OPTIONS = [k for k, v in OPTIONS.items() if "projection_type" not in v]
LABELS = torch.tensor([0, 2])


def _theta(model, name="default"):
    return model.base_model.gpart_theta_d[name]


def _layers(model):
    return [m for m in model.modules() if isinstance(m, GPartLayer)]


def _flat_update(model, name="default"):
    parts = []
    for layer in _layers(model):
        parts.append(layer.get_delta_weight(name).reshape(-1).double())
        db = layer.get_delta_bias(name)
        if db is not None:
            parts.append(db.double())
    return torch.cat(parts)


def _train(model, steps=3, lr=5e-2):
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        model(input_ids=tokens(), labels=LABELS).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("option", list(OPTIONS))
def test_saved_adapter_is_theta_and_head_and_reloads_and_merges_exactly(tmp_path, option):
    config = GPartConfig(d=64, bias="gpart_only", task_type="SEQ_CLS", **OPTIONS[option])
    model = get_peft_model(tiny_roberta(), config)
    _train(model)
    assert _theta(model).abs().sum() > 0
    x = tokens()
    expected = model(input_ids=x).logits
    assert not torch.equal(expected, tiny_roberta()(input_ids=x).logits)
    model.save_pretrained(tmp_path / "ad")
    tensors = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    assert tensors["base_model.gpart_theta_d"].shape == (64,)
    assert all(k.startswith("base_model.model.classifier.") for k in tensors if "gpart" not in k)
    assert {k for k in tensors if "gpart" in k} == {"base_model.gpart_theta_d"}

    loaded = PeftModel.from_pretrained(tiny_roberta(), tmp_path / "ad").eval()
    assert torch.equal(loaded(input_ids=x).logits, expected)
    merged = loaded.merge_and_unload()
    assert not any(isinstance(m, GPartLayer) for m in merged.modules())
    assert torch.equal(merged(input_ids=x).logits, expected)


@pytest.mark.parametrize("option", PARTITION_OPTIONS)
def test_partition_variants_are_exactly_isometric(option):
    config = GPartConfig(d=96, bias="gpart_only", task_type="SEQ_CLS", **OPTIONS[option])
    model = get_peft_model(tiny_roberta(), config)
    with torch.no_grad():
        _theta(model).normal_()
    theta = _theta(model).detach().double()
    torch.testing.assert_close(
        _flat_update(model).pow(2).sum(), theta.pow(2).sum(), rtol=1e-5, atol=0
    )


@pytest.mark.parametrize("option", list(OPTIONS))
def test_theta_gradient_matches_finite_differences_in_float64(option):
    model = get_peft_model(
        tiny_roberta().double(),
        GPartConfig(
            d=48, bias="gpart_only", init_bound=0.3, task_type="SEQ_CLS", **OPTIONS[option]
        ),
    )
    model.base_model.gpart_theta_d["default"] = nn.Parameter(_theta(model).detach().double())
    theta = _theta(model)
    x = tokens()

    def loss():
        return model(input_ids=x).logits.pow(2).sum()

    with gpart.tuner.fused.forced("off"):
        (grad,) = torch.autograd.grad(loss(), theta)
        assert grad.abs().sum() > 0
        eps = 1e-6
        for seed in range(2):
            direction = torch.randn(
                theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
            )
            with torch.no_grad():
                theta += eps * direction
                up = loss()
                theta -= 2 * eps * direction
                down = loss()
                theta += eps * direction
            torch.testing.assert_close(
                (up - down) / (2 * eps), (grad * direction).sum(), rtol=1e-6, atol=1e-12
            )


def test_fused_path_matches_eager_for_each_option():
    # The fused kernels (GPART_COMPILE=on) and the eager code give the same outputs and grads.
    for option in ("block", "signed", "fastfood_block"):
        results = []
        for mode in ("off", "on"):
            with gpart.tuner.fused.forced(mode):
                model = get_peft_model(
                    tiny_roberta(),
                    GPartConfig(d=64, init_bound=0.2, task_type="SEQ_CLS", **OPTIONS[option]),
                )
                out = model(input_ids=tokens()).logits
                (grad,) = torch.autograd.grad(out.pow(2).sum(), _theta(model))
                results.append((out, grad))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ partition_scope


class Blocks(nn.Module):
    """Numbered blocks listed out of numeric order ("2" before "10" before "1")."""

    def __init__(self, sizes=None) -> None:
        super().__init__()
        torch.manual_seed(0)
        sizes = sizes or {"2": 8, "10": 9, "1": 7}
        self.blocks = nn.ModuleDict({k: nn.Linear(6, n) for k, n in sizes.items()})
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return sum(b(x).sum(-1, keepdim=True) for b in self.blocks.values()) + self.out(x)


def test_reference_blocks_natural_order_even_shares_and_seed_plus_ordinal():
    model = get_peft_model(
        Blocks(),
        GPartConfig(
            d=10,
            target_modules=["blocks.1", "blocks.2", "blocks.10"],
            partition_scope="transformer_block",
            proj_seed=5,
        ),
    )
    part = model.base_model.gpart_shared.partitions["default"]
    assert [b.name for b in part.blocks] == ["blocks.1", "blocks.2", "blocks.10"]
    assert [b.projection.d for b in part.blocks] == [4, 3, 3]
    assert [b.projection.seed for b in part.blocks] == [5, 6, 7]  # proj_seed + ordinal
    # a targeted module outside every block is an error, as in the reference
    with pytest.raises(ValueError, match=r"'out' is in no numbered transformer block"):
        get_peft_model(
            Blocks(),
            GPartConfig(
                d=11, target_modules=["blocks.1", "out"], partition_scope="transformer_block"
            ),
        )


def test_scheme1_blocks_in_natural_order_with_even_shares_and_their_own_seeds():
    model = get_peft_model(
        Blocks(),
        GPartConfig(
            d=11,
            target_modules=["blocks.1", "blocks.2", "blocks.10", "out"],
            partition_scope="transformer_block",
            proj_seed=5,
            scheme_version=1,
        ),
    )
    part = model.base_model.gpart_shared.partitions["default"]
    assert isinstance(part, ScopedPartition)
    assert [b.name for b in part.blocks] == ["blocks.1", "blocks.2", "blocks.10", EXTRA_BLOCK]
    # d = 11 over 4 blocks: the first 11 mod 4 = 3 get one more
    assert [b.projection.d for b in part.blocks] == [3, 3, 3, 2]
    assert [b.theta_start for b in part.blocks] == [0, 3, 6, 9]
    assert [b.projection.total for b in part.blocks] == [42, 48, 54, 18]
    assert [b.projection.seed for b in part.blocks] == [block_seed(5, b, 1) for b in range(4)]
    assert len({b.projection.seed for b in part.blocks}) == 4
    # positions restart at 0 in each block: each block's ids cover its own groups only
    for layer in _layers(model):
        block = part.blocks[layer.gpart_slot["default"].block]
        term = layer._term("default", training=False)
        ids = term.group_ids(0, term.numel, torch.device("cpu"))
        assert term.offset == layer.gpart_slot["default"].offset - block.start
        assert int(ids.max()) < block.projection.d


@pytest.mark.parametrize("projection", ["partition", "fastfood"])
def test_a_block_moves_only_with_its_slice_of_theta(projection):
    model = get_peft_model(
        tiny_roberta(),
        GPartConfig(
            d=50,
            target_modules="all-linear",
            partition_scope="transformer_block",
            projection_type=projection,
            # block-wise Fastfood is scheme 1's; the reference refuses it
            scheme_version=1 if projection == "fastfood" else 2,
            task_type="SEQ_CLS",
        ),
    )
    part = model.base_model.gpart_shared.partitions["default"]
    assert [b.name for b in part.blocks] == ["roberta.encoder.layer.0", "roberta.encoder.layer.1"]
    layers = _layers(model)
    for b, block in enumerate(part.blocks):
        with torch.no_grad():
            _theta(model).zero_()
            _theta(model)[block.theta_start : block.theta_start + block.projection.d].normal_()
        for layer in layers:
            moved = layer.get_delta_weight("default").abs().sum() > 0
            assert moved == (layer.gpart_slot["default"].block == b)
    # isometry holds per block, hence globally
    if projection == "partition":
        with torch.no_grad():
            _theta(model).normal_()
        theta = _theta(model).detach().double()
        torch.testing.assert_close(
            _flat_update(model).pow(2).sum(), theta.pow(2).sum(), rtol=1e-5, atol=0
        )


def test_scheme1_modules_outside_the_blocks_form_one_extra_block():
    model = get_peft_model(
        tiny_bert(),
        GPartConfig(
            d=30,
            target_modules="all-linear",
            partition_scope="transformer_block",
            scheme_version=1,
            task_type="SEQ_CLS",
        ),
    )
    part = model.base_model.gpart_shared.partitions["default"]
    assert [b.name for b in part.blocks] == [
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        EXTRA_BLOCK,
    ]
    assert part.blocks[-1].projection.total == 32 * 32  # bert.pooler.dense


def test_scope_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"block blocks\.1 has 6 adapted entries.*share"):
        get_peft_model(
            Blocks(sizes={"1": 1, "2": 20}),
            GPartConfig(
                d=30, target_modules=["blocks.1", "blocks.2"], partition_scope="transformer_block"
            ),
        )
    with pytest.raises(ValueError, match="'patch' is in no numbered .*layers_pattern"):
        get_peft_model(
            ConvNet(),
            GPartConfig(d=8, target_modules=["patch", "head"], partition_scope="transformer_block"),
        )
    with pytest.raises(ValueError, match="no container named.*layers_pattern"):
        get_peft_model(
            ConvNet(),
            GPartConfig(
                d=8,
                target_modules=["patch", "head"],
                partition_scope="transformer_block",
                scheme_version=1,
            ),
        )
    # layers_pattern names the container when it is called something else
    net = ConvNet()
    net.stages = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
    model = get_peft_model(
        net,
        GPartConfig(
            d=8,
            target_modules=["stages.0", "stages.1"],
            partition_scope="transformer_block",
            layers_pattern="stages",
        ),
    )
    assert len(model.base_model.gpart_shared.partitions["default"].blocks) == 2


# ------------------------------------------------------------------ signed_magnitude


def test_scheme1_signed_magnitude_pools_bins_and_sizes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1001, generator=g)
    w[:5] = 0.0  # zeros join the non-negative pool
    w[10:20] = w[10]  # ties: broken by position
    d = 17
    ids, sizes = signed_magnitude_ids(w, d, 1)
    n_neg = int((w < 0).sum())
    d_neg = math.floor(d * n_neg / w.numel() + 0.5)
    assert torch.equal(sizes, torch.bincount(ids, minlength=d))
    for lo, hi, neg in ((0, d_neg, True), (d_neg, d, False)):
        pool = sizes[lo:hi]
        assert int(pool.max() - pool.min()) <= 1 and int(pool.min()) > 0
        for j in range(lo, hi):
            members = w[ids == j]
            assert bool((members < 0).all()) if neg else bool((members >= 0).all())
        # contiguous bins of |w|: a later group's smallest >= an earlier group's largest
        for j in range(lo, hi - 1):
            assert w[ids == j].abs().max() <= w[ids == j + 1].abs().min()
    assert int(sizes[:d_neg].sum()) == n_neg
    # ties in |w| are ordered by position
    tied = ids[10:20]
    assert torch.equal(tied, tied.sort().values)


def test_signed_magnitude_in_a_model_groups_the_base_weights():
    base = tiny_roberta()
    model = get_peft_model(
        base,
        GPartConfig(
            d=40,
            grouping_strategy="signed_magnitude",
            assignment_backend="materialized",
            task_type="SEQ_CLS",
        ),
    )
    layers = _layers(model)
    w = torch.cat([m.get_base_layer().weight.detach().reshape(-1) for m in layers])
    ids = torch.cat([m.gpart_ids["default"].long() for m in layers])
    expected, _ = signed_magnitude_ids(w, 40)
    assert torch.equal(ids, expected)
    assert {k for k in model.state_dict() if "gpart_ids" in k} == set()


def test_scheme1_signed_magnitude_edge_cases():
    ids, sizes = signed_magnitude_ids(torch.tensor([1.0, 2.0, 3.0, 4.0]), 2, 1)
    assert ids.tolist() == [0, 0, 1, 1]
    ids, _ = signed_magnitude_ids(torch.tensor([-1.0, 2.0, -3.0, 4.0, 5.0]), 3, 1)
    assert ids.tolist() == [0, 1, 0, 1, 2]
    with pytest.raises(ValueError, match="d must be >= 2"):
        signed_magnitude_ids(torch.tensor([-1.0, 1.0]), 1, 1)


def test_reference_signed_magnitude_rules():
    """Scheme 2 = the reference's rules (its grouping.py), worked by hand."""
    # one pool: all d groups, cut at g * n // k
    ids, _ = signed_magnitude_ids(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 2)
    assert ids.tolist() == [0, 0, 1, 1, 1]  # cuts at 0, 5 // 2 = 2, 5
    # k_neg = round(3 * 2 / 5) = round(1.2) = 1; the positive pool (3 entries, 2 groups) is
    # cut at 0, 3 // 2 = 1, 3 and its ids follow the negative pool's
    ids, _ = signed_magnitude_ids(torch.tensor([-1.0, 2.0, -3.0, 4.0, 5.0]), 3)
    assert ids.tolist() == [0, 1, 0, 2, 2]
    # round half to even: d * n_neg / N = 2.5 -> 2 negative groups, not 3
    w = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    ids, sizes = signed_magnitude_ids(w, 5)
    assert sizes.tolist() == [2, 3, 1, 2, 2]
    # d = 1 with both signs: everything in group 0 (scheme 1 refuses)
    ids, _ = signed_magnitude_ids(torch.tensor([-1.0, 1.0]), 1)
    assert ids.tolist() == [0, 0]
    # the tie-break term index / (n + 1) uses the index in the whole space: with a pool much
    # smaller than the space it outweighs small magnitude gaps (as in the reference)
    # (pool {0.5 at index 0, 0.2 at index 9}: keys 0.5 * 3 + 0 / 3 < 0.2 * 3 + 9 / 3)
    w = torch.tensor([0.5] + [-1.0] * 8 + [0.2])
    ids, _ = signed_magnitude_ids(w, 10)
    assert (int(ids[0]), int(ids[9])) == (8, 9)


# ------------------------------------------------------------------ fastfood


def _hadamard(n):
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def test_fwht_is_the_hadamard_matrix():
    x = torch.randn(3, 16, dtype=torch.float64)
    torch.testing.assert_close(fwht(x), x @ _hadamard(16))


@pytest.mark.parametrize("scheme", [1, 2])
def test_fastfood_is_h_g_pi_h_b_and_its_transpose_is_exact(scheme):
    proj = FastfoodProjection(total=300, d=20, seed=3, scheme=scheme)
    n = proj.length
    assert n == 32
    # dense P from the blocks' definition
    sign, gauss, perm = proj._randoms(0, math.ceil(300 / n), torch.device("cpu"), torch.float64)
    h = _hadamard(n)
    rows = []
    for k in range(sign.shape[0]):
        pi = torch.zeros(n, n, dtype=torch.float64)
        pi[torch.arange(n), perm[k]] = 1.0
        rows.append(h @ torch.diag(gauss[k]) @ pi @ h @ torch.diag(sign[k]))
    dense = torch.cat(rows)[:300, :20]
    if scheme == 2:  # the reference scales after the transforms; scheme 1 folds c into s
        dense = dense / math.sqrt(300 * n)
    theta = torch.randn(20, dtype=torch.float64)
    for start, count in ((0, 300), (45, 100), (290, 10)):
        torch.testing.assert_close(
            proj.apply(theta, start, count), (dense @ theta)[start : start + count]
        )
        y = torch.randn(count, dtype=torch.float64)
        torch.testing.assert_close(proj.transpose(y, start), dense[start : start + count].t() @ y)
    # signs are +-1, the permutations are permutations
    assert set(sign.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(perm.sort(1).values, torch.arange(n).expand_as(perm))


def test_fastfood_is_isometric_in_expectation():
    # E[P^T P] = I with P = c H G Pi H B, c = 1/sqrt(D L): the mean of ||P theta||^2/||theta||^2
    # over seeds is 1 (a scale off by sqrt(2) gives 2 or 1/2).
    theta = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ratios = []
    for seed in range(30):
        proj = FastfoodProjection(total=3000, d=100, seed=seed)
        coef = theta * proj.scales(True).double()
        ratios.append(float(proj.apply(coef, 0, 3000).pow(2).sum() / theta.pow(2).sum()))
    assert abs(sum(ratios) / len(ratios) - 1.0) < 0.05
    assert max(ratios) - min(ratios) > 1e-3  # random, not exactly isometric


def test_fastfood_model_update_is_isometric_in_expectation():
    ratios = []
    for seed in range(8):
        model = get_peft_model(
            tiny_roberta(),
            GPartConfig(d=64, projection_type="fastfood", proj_seed=seed, task_type="SEQ_CLS"),
        )
        with torch.no_grad():
            _theta(model).normal_()
        theta = _theta(model).detach().double()
        ratios.append(float(_flat_update(model).pow(2).sum() / theta.pow(2).sum()))
    assert abs(sum(ratios) / len(ratios) - 1.0) < 0.08


def test_reference_fastfood_factors_are_its_generator_stream():
    proj = FastfoodProjection(total=100, d=20, seed=9)
    sign, gauss, perm = proj._randoms(0, 4, torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(9)
    for k in range(4):  # B, G, Pi per block, in this order, from one generator
        assert torch.equal(
            sign[k], torch.randint(0, 2, (32,), generator=g, dtype=torch.int8) * 2.0 - 1
        )
        assert torch.equal(gauss[k], torch.randn(32, generator=g))
        assert torch.equal(perm[k], torch.randperm(32, generator=g))
    gains = proj.scales(False).double()
    torch.testing.assert_close(gains.max() / gains.min(), torch.tensor(4.0, dtype=torch.float64))
    torch.testing.assert_close(gains.pow(2).mean(), torch.tensor(1.0, dtype=torch.float64))
    assert not torch.equal(gains, gains.sort(descending=True).values)  # shuffled
    assert torch.equal(proj.scales(True), torch.ones(20))


def test_scheme1_fastfood_anisotropic_gain_is_a_4_to_1_spread():
    proj = FastfoodProjection(total=1000, d=50, seed=0, scheme=1)
    iso = proj.scales(True).double()
    aniso = proj.scales(False).double()
    c = 1 / math.sqrt(1000 * 64)
    torch.testing.assert_close(iso, torch.full((50,), c, dtype=torch.float64))
    torch.testing.assert_close(aniso.max() / aniso.min(), torch.tensor(4.0, dtype=torch.float64))
    torch.testing.assert_close(aniso.pow(2).mean(), torch.tensor(c * c, dtype=torch.float64))


# ------------------------------------------------------------------ invalid combinations


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(projection_type="fastfood", grouping_strategy="balanced"),
            r"valid with fastfood: random",
        ),
        (
            dict(
                projection_type="fastfood",
                grouping_strategy="signed_magnitude",
                assignment_backend="materialized",
            ),
            r"valid with fastfood: random",
        ),
        (
            dict(projection_type="fastfood", assignment_backend="materialized"),
            r"valid with fastfood: stateless",
        ),
        (dict(grouping_strategy="signed_magnitude"), r"valid with signed_magnitude: materialized"),
        (
            dict(partition_scope="per_layer"),
            r"partition_scope must be one of global, transformer_block",
        ),
        (dict(projection_type="dense"), r"projection_type must be one of partition, fastfood"),
        (
            dict(grouping_strategy="sorted"),
            r"grouping_strategy must be one of random, balanced, signed_magnitude",
        ),
    ],
)
def test_invalid_combinations_name_the_valid_ones(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPartConfig(d=8, **kwargs)


def test_configs_side_fields_bridge_and_fail_as_config_errors():
    from gpart.configs import ConfigError, resolve_experiment, to_peft_config

    exp = resolve_experiment(overrides={"adapter.projection_type": "fastfood", "adapter.d": "64"})
    pc = to_peft_config(exp.adapter, seed=0)
    assert (pc.partition_scope, pc.projection_type) == ("global", "fastfood")
    exp = resolve_experiment(overrides={"adapter.partition_scope": "transformer_block"})
    assert to_peft_config(exp.adapter, seed=0).partition_scope == "transformer_block"
    exp = resolve_experiment(
        overrides={
            "adapter.grouping_strategy": "signed_magnitude",
            "adapter.assignment_backend": "materialized",
        }
    )
    pc = to_peft_config(exp.adapter, seed=0)
    assert (pc.grouping_strategy, pc.assignment_backend) == ("signed_magnitude", "materialized")
    with pytest.raises(ConfigError, match=r"transformer_block' needs projection_type='partition"):
        resolve_experiment(
            overrides={
                "adapter.partition_scope": "transformer_block",
                "adapter.projection_type": "fastfood",
            }
        )
    with pytest.raises(
        ConfigError, match=r"^adapter\.grouping_strategy: .*valid with signed_magnitude"
    ):
        resolve_experiment(overrides={"adapter.grouping_strategy": "signed_magnitude"})
    with pytest.raises(ConfigError, match=r"valid with fastfood: random"):
        resolve_experiment(
            overrides={
                "adapter.projection_type": "fastfood",
                "adapter.grouping_strategy": "balanced",
            }
        )
    with pytest.raises(ConfigError, match="partition_scope"):
        resolve_experiment(overrides={"adapter.partition_scope": "per_layer"})


def test_fastfood_layers_cache_their_randoms_unsaved_and_exact(tmp_path):
    # Each layer keeps B, G, Pi of its blocks (regenerated at injection, not per forward):
    # non-persistent buffers, never in the adapter file; the cached update equals the
    # regenerated one bit for bit, and so does theta's gradient.
    model = get_peft_model(
        tiny_roberta(),
        GPartConfig(d=48, projection_type="fastfood", init_bound=0.1, task_type="SEQ_CLS"),
    )
    layers = _layers(model)
    assert all("default" in layer.gpart_ff_sign for layer in layers)
    # the whole-model table the layers took their rows from is not kept beside them
    assert fastfood._reference_table.cache_info().currsize == 0
    layer = layers[0]
    assert layer.gpart_ff_sign["default"].dtype == torch.int8
    assert layer.gpart_ff_perm["default"].dtype == torch.int16
    assert not any("gpart_ff" in k for k in model.state_dict())
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert sum(v.numel() for k, v in saved.items() if "gpart_theta" in k) == 48
    assert not any("gpart_ff" in k for k in saved)

    term = layer._term("default", training=False)
    assert term.fastfood is not None
    weight = layer.get_base_layer().weight
    cached = term.values(0, term.numel, weight.device)
    term.fastfood = None
    torch.testing.assert_close(cached, term.values(0, term.numel, weight.device), rtol=0, atol=0)
    grad = torch.randn(term.numel)
    g_regen = torch.zeros(48)
    term.accumulate_grad(g_regen, 0, grad)
    term.fastfood = layer._term("default", training=False).fastfood
    g_cached = torch.zeros(48)
    term.accumulate_grad(g_cached, 0, grad)
    torch.testing.assert_close(g_cached, g_regen, rtol=0, atol=0)
