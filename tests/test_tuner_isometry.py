"""GPart's math: isometry, the dense map P, gradients = P^T grad_W, exact start at the base."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

import gpart  # noqa: F401  (registers GPart with peft)
from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer
from gpart.tuner.ops import AdapterTerm, gpart_linear
from gpart.tuner.partition import Partition
from tiny_models import tiny_roberta, tokens


def _gpart_layers(model):
    return [m for m in model.modules() if isinstance(m, GPartLayer)]


def _theta(model, name="default"):
    return model.base_model.gpart_theta_d[name]


def _flat_update(model, name="default"):
    """All layers' (dW, db) flattened in the global order."""
    parts = []
    for layer in _gpart_layers(model):
        parts.append(layer.get_delta_weight(name).reshape(-1).double())
        db = layer.get_delta_bias(name)
        if db is not None:
            parts.append(db.double())
    return torch.cat(parts)


def _dense_p(model, name="default"):
    part = model.base_model.gpart_shared.partitions[name]
    scales = model.base_model.gpart_shared.scales[name].double()
    if part.positional:
        ids = part.group_ids(0, part.total)
    else:  # stored ids (the seeded stream of scheme 2's materialized random grouping)
        ids = torch.cat([layer.gpart_ids[name].long() for layer in _gpart_layers(model)])
    p = torch.zeros(part.total, part.d, dtype=torch.float64)
    p[torch.arange(part.total), ids] = scales[ids]
    return p


@pytest.mark.parametrize("grouping", ["random", "balanced"])
@pytest.mark.parametrize("bias", ["none", "gpart_only"])
def test_isometry(grouping, bias):
    model = get_peft_model(
        tiny_roberta(),
        GPartConfig(d=256, grouping_strategy=grouping, bias=bias, task_type="SEQ_CLS"),
    )
    with torch.no_grad():
        _theta(model).normal_()
    update = _flat_update(model)
    theta = _theta(model).detach().double()
    torch.testing.assert_close(update.pow(2).sum(), theta.pow(2).sum(), rtol=1e-5, atol=0)


def test_not_isometric_without_scaling():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=256, isometric=False, task_type="SEQ_CLS"))
    with torch.no_grad():
        _theta(model).normal_()
    ratio = _flat_update(model).pow(2).sum() / _theta(model).detach().double().pow(2).sum()
    assert ratio > 10  # each theta_j is copied n_j ~ D/d times


@pytest.mark.parametrize("assignment", ["stateless", "materialized"])
def test_dense_p_reproduces_what_the_layers_apply(assignment):
    model = get_peft_model(
        tiny_roberta(),
        GPartConfig(d=50, bias="gpart_only", assignment_backend=assignment, task_type="SEQ_CLS"),
    )
    with torch.no_grad():
        _theta(model).normal_()
    p = _dense_p(model)
    # orthonormal columns: P^T P = I (every group is non-empty here)
    torch.testing.assert_close(p.t() @ p, torch.eye(50, dtype=torch.float64))
    torch.testing.assert_close(_flat_update(model), p @ _theta(model).detach().double())


def test_scheme1_assignment_modes_give_bit_identical_outputs_and_ids():
    """Under scheme 1, ``materialized`` only cached the stateless ids."""
    outs = {}
    for assignment in ("stateless", "materialized"):
        torch.manual_seed(0)
        model = get_peft_model(
            tiny_roberta(),
            GPartConfig(
                d=40,
                init_bound=0.3,
                assignment_backend=assignment,
                scheme_version=1,
                task_type="SEQ_CLS",
            ),
        )
        outs[assignment] = model(input_ids=tokens()).logits
        if assignment == "materialized":
            layers = _gpart_layers(model)
            part = model.base_model.gpart_shared.partitions["default"]
            for layer in layers:
                slot = layer.gpart_slot["default"]
                assert layer.gpart_ids["default"].dtype == torch.int32
                assert torch.equal(
                    layer.gpart_ids["default"].long(), part.group_ids(slot.offset, slot.numel)
                )
        else:
            assert all(len(layer.gpart_ids) == 0 for layer in _gpart_layers(model))
    assert torch.equal(outs["stateless"], outs["materialized"])


def test_materialized_random_is_the_seeded_randint_stream_layer_by_layer():
    """Scheme 2 (the reference's): one CPU generator seeded with proj_seed, an int32
    randint draw per layer in layer order; a different partition from the stateless one."""
    model = get_peft_model(
        tiny_roberta(),
        GPartConfig(d=40, proj_seed=7, assignment_backend="materialized", bias="gpart_only"),
    )
    g = torch.Generator().manual_seed(7)
    layers = _gpart_layers(model)
    for layer in layers:
        n = layer.gpart_slot["default"].numel
        want = torch.randint(0, 40, (n,), generator=g, dtype=torch.int32)
        assert torch.equal(layer.gpart_ids["default"], want)
    ids = torch.cat([layer.gpart_ids["default"].long() for layer in layers])
    stateless = Partition(total=ids.numel(), d=40, seed=7, grouping="random")
    assert not torch.equal(ids, stateless.group_ids(0, ids.numel()))
    sizes = torch.bincount(ids, minlength=40).clamp(min=1).float()
    assert torch.equal(model.base_model.gpart_scales["default"], 1.0 / torch.sqrt(sizes))


def test_zero_theta_reproduces_base_model_bit_for_bit():
    base = tiny_roberta()
    x = tokens()
    ref = base(input_ids=x).logits
    model = get_peft_model(base, GPartConfig(d=64, bias="gpart_only", task_type="SEQ_CLS"))
    model.train()  # dropout inside the base model is 0 in eval only; compare in eval
    model.eval()
    assert torch.equal(model(input_ids=x).logits, ref)
    assert torch.count_nonzero(_theta(model)) == 0


def test_zero_theta_still_gets_a_gradient():
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, task_type="SEQ_CLS"))
    loss = model(input_ids=tokens(), labels=torch.tensor([0, 2])).loss
    loss.backward()
    assert _theta(model).grad is not None and _theta(model).grad.abs().sum() > 0


def _linear_term(theta, offset=0, bias=True, dropout=0.0, key=None, d=6, shape=(5, 4)):
    total = shape[0] * shape[1] + (shape[0] if bias else 0) + offset
    part = Partition(total=total, d=d, seed=5, grouping="random")
    return AdapterTerm(
        theta=theta,
        scales=part.scales(True).double(),
        partition=part,
        offset=offset,
        weight_numel=shape[0] * shape[1],
        bias_numel=shape[0] if bias else 0,
        dropout=dropout,
        dropout_key=key,
    )


@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("transposed", [False, True])
def test_gradcheck_float64(dropout, transposed):
    torch.manual_seed(0)
    shape = (5, 4)
    w = torch.randn(*(shape[::-1] if transposed else shape), dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    theta = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def f(x, theta):
        term = _linear_term(theta, dropout=dropout, key=123 if dropout else None)
        return gpart_linear(x, w, b, [term], transposed=transposed)

    assert torch.autograd.gradcheck(f, (x, theta))


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_theta_grad_equals_p_transpose_grad_w(dropout):
    """Against a dense reference: W = W0 + reshape(M P theta), autograd through plain linear."""
    torch.manual_seed(1)
    w0 = torch.randn(5, 4, dtype=torch.float64)
    b0 = torch.randn(5, dtype=torch.float64)
    x = torch.randn(7, 4, dtype=torch.float64)
    theta = torch.randn(6, dtype=torch.float64, requires_grad=True)
    term = _linear_term(theta, dropout=dropout, key=99 if dropout else None)
    y = gpart_linear(x, w0, b0, [term])
    (y.sin().sum()).backward()
    got = theta.grad.clone()

    ids = term.partition.group_ids(0, 25)
    p = torch.zeros(25, 6, dtype=torch.float64)
    p[torch.arange(25), ids] = term.scales[ids]
    mask = (
        term._keep_scale(0, 25, torch.device("cpu"))
        if dropout
        else torch.ones(25, dtype=torch.float64)
    )
    mask[20:] = 1.0  # the reference (scheme 2) drops entries of dW, never of the bias
    if dropout:
        assert 0 < int((mask == 0).sum()) < 25  # some entries really are dropped
    theta_ref = theta.detach().clone().requires_grad_(True)
    upd = mask * (p @ theta_ref)
    y_ref = torch.nn.functional.linear(x, w0 + upd[:20].view(5, 4), b0 + upd[20:])
    torch.testing.assert_close(y, y_ref)
    y_ref.sin().sum().backward()
    torch.testing.assert_close(got, theta_ref.grad)
    # the same thing written as P^T grad_W
    w_leaf = (w0 + upd[:20].view(5, 4)).detach().requires_grad_(True)
    b_leaf = (b0 + upd[20:]).detach().requires_grad_(True)
    torch.nn.functional.linear(x, w_leaf, b_leaf).sin().sum().backward()
    grad_wb = torch.cat([w_leaf.grad.reshape(-1), b_leaf.grad]) * mask
    torch.testing.assert_close(got, p.t() @ grad_wb)


def test_nothing_d_long_waits_for_the_backward_per_layer():
    """Between forward and backward a GPart layer keeps only what autograd saves (x, the
    weights) and the one d-long `s * theta` that every layer of the forward shares, not one
    of its own: 8 layers at d = 4096 would hold 128 KiB of it, against 4 KiB of activations
    and 16 KiB for the shared one. Counted with torch's profiler allocation events."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    stack = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(8)])
    model = get_peft_model(stack, GPartConfig(d=4096, target_modules=[str(i) for i in range(8)]))
    x = torch.randn(2, 64)
    model(x).sum().backward()  # first call: lazy state
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = model(x).sum()
    live = sum(e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    assert 4096 * 4 < live < 2 * 4096 * 4  # the shared s * theta, not a second one
    y.backward()
    assert _theta(model).grad.abs().sum() > 0
    # The wrapped model called directly (no forward of ours around it): none kept at all.
    del y
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = model.get_base_model()(x).sum()
    live = sum(e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    assert 0 < live < 4096 * 4
    y.backward()


def test_theta_changed_in_place_before_the_backward_is_refused():
    """The backward rebuilds W from theta; autograd's version check (theta is saved) refuses
    a theta changed in between, instead of mixing two thetas in one gradient."""
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, task_type="SEQ_CLS"))
    loss = model(input_ids=tokens(), labels=torch.tensor([0, 2])).loss
    with torch.no_grad():
        _theta(model).add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_dropout_masks_entries_of_dw_only_in_training():
    model = get_peft_model(
        tiny_roberta(), GPartConfig(d=64, init_bound=0.5, gpart_dropout=0.5, task_type="SEQ_CLS")
    )
    x = tokens()
    model.eval()
    a = model(input_ids=x).logits
    assert torch.equal(a, model(input_ids=x).logits)  # eval: no masking, deterministic
    layer = _gpart_layers(model)[0]
    layer.train()
    term = layer._term("default", training=True)
    keep = term._keep_scale(0, term.weight_numel, torch.device("cpu"))
    frac = float((keep == 0).float().mean())
    assert 0.4 < frac < 0.6
    assert set(keep.unique().tolist()) <= {0.0, 2.0}


def _logits(model):
    return model(input_ids=tokens()).logits


def test_a_layer_keeps_its_terms_only_while_they_are_the_adapters():
    """Layers reuse the description of their adapter between calls (cheaper calls), so a
    theta, scales or ids that changed must reach the next forward all the same: a new theta
    Parameter, a model cast with `.to()` (new scales and ids tensors), new ids. Each is
    compared with a model built with the change before its first forward."""
    config = dict(d=64, task_type="SEQ_CLS", assignment_backend="materialized")
    theta = torch.randn(64)

    def fresh(dtype=torch.float32, ids=None):
        model = get_peft_model(tiny_roberta(), GPartConfig(**config)).to(dtype)
        with torch.no_grad():
            _theta(model).copy_(theta)
        if ids is not None:
            _gpart_layers(model)[0].set_ids("default", ids)
        return _logits(model)

    used = get_peft_model(tiny_roberta(), GPartConfig(**config))
    first = _logits(used)  # its layers now keep their terms
    used.base_model.gpart_theta_d["default"] = torch.nn.Parameter(theta.clone())
    assert torch.equal(_logits(used), fresh()) and not torch.equal(_logits(used), first)
    used = used.to(torch.float64)  # every buffer (scales, the materialized ids) a new tensor
    assert torch.equal(_logits(used), fresh(torch.float64))
    before = _logits(used)
    new_ids = torch.flip(_gpart_layers(used)[0].gpart_ids["default"], [0])
    _gpart_layers(used)[0].set_ids("default", new_ids)
    after = _logits(used)
    assert torch.equal(after, fresh(torch.float64, new_ids)) and not torch.equal(after, before)
