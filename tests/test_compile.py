"""A model holding GPart layers compiles whole with `torch.compile` and trains as eagerly.

The layers are at the fused path's size (`fused.MIN_NUMEL` entries, the default policy), so
each call is GPart's opaque custom op running its fused kernels (`gpart.tuner.custom_ops`).
`fullgraph=True` fails on any graph break; the loss and theta's gradient must equal the
eager model's to 1e-6 relative (inductor compiles the rest of the model, so its sums may
be ordered differently).
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch._inductor.config
import torch.nn.functional as F
from peft import get_peft_model
from torch import nn

import gpart.tuner.fused as fused
from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer
from tiny_models import tiny_roberta_config

pytestmark = pytest.mark.slow  # each case compiles a model (~10 s on 2 cores)

WIDTH = 256  # a WIDTH x WIDTH weight is fused.MIN_NUMEL entries: the fused path
assert WIDTH * WIDTH >= fused.MIN_NUMEL


@pytest.fixture(scope="module", autouse=True)
def _needs_a_working_compiler():
    try:  # inductor needs a C++ compiler on CPU
        torch.compile(lambda t: t * 2 + 1)(torch.ones(3))
    except Exception as err:
        pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # every case compiles anew, never hits the recompile limit
    yield
    assert fused._broken is None, f"fused kernels fell back to eager: {fused._broken}"
    torch._dynamo.reset()


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, WIDTH)
        self.fc2 = nn.Linear(WIDTH, WIDTH)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.relu(self.fc1(h)))


class Net(nn.Module):
    """A patch-embedding conv and an embedding (65,536 entries each), two blocks of two
    linears (`layers`: transformer blocks to `partition_scope`), a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(4, WIDTH, kernel_size=8, stride=8)
        self.emb = nn.Embedding(WIDTH, WIDTH)
        self.layers = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h = self.patch(images).flatten(2).mean(-1) + self.emb(tokens).mean(1)
        for block in self.layers:
            h = block(h)
        return self.head(h)


ALL = ["patch", "emb", "fc1", "fc2"]
VARIANTS = {
    "random": dict(bias="gpart_only"),
    "random_scheme1": dict(scheme_version=1),
    "balanced": dict(grouping_strategy="balanced"),  # scheme 3: stratified, hashed in-kernel
    "balanced_feistel": dict(grouping_strategy="balanced", scheme_version=2),  # id tensor
    "materialized": dict(assignment_backend="materialized"),
    "signed_magnitude": dict(
        grouping_strategy="signed_magnitude", assignment_backend="materialized"
    ),
    "dropout": dict(gpart_dropout=0.2),
    "dropout_materialized": dict(gpart_dropout=0.2, assignment_backend="materialized"),
    "block_scope": dict(partition_scope="transformer_block", target_modules=["fc1", "fc2"]),
    "fastfood": dict(projection_type="fastfood"),
}


def _model(**options) -> nn.Module:
    config = dict(d=3000, target_modules=ALL, init_bound=0.05) | options
    return get_peft_model(Net(), GPartConfig(**config)).train()


def _inputs():
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 4, 16, 16, generator=gen)
    tokens = torch.randint(0, WIDTH, (2, 8), generator=gen)
    return images, tokens, torch.tensor([0, 2])


def _step(model, thetas, seed=5):
    """Loss and theta's gradient (per adapter) of one step from the same RNG state."""
    images, tokens, labels = _inputs()
    torch.manual_seed(seed)  # dropout keys
    loss = F.cross_entropy(model(images, tokens), labels)
    loss.backward()
    grads = [t.grad.clone() for t in thetas]
    for t in thetas:
        t.grad = None
    return loss.detach(), grads


def _assert_close(got, want):
    assert (got - want).norm() <= 1e-6 * want.norm(), ((got - want).norm(), want.norm())


def _assert_compiled_equals_eager(model, thetas):
    assert all(m._active_terms() for m in model.modules() if isinstance(m, GPartLayer))
    loss, grads = _step(model, thetas)
    # fallback_random: inductor draws its random numbers (here GPart's dropout keys) with
    # eager's generator, so both runs see the same masks.
    with torch._inductor.config.patch(fallback_random=True):
        compiled = torch.compile(model, fullgraph=True)
        loss_c, grads_c = _step(compiled, thetas)
    _assert_close(loss_c, loss)
    for got, want in zip(grads_c, grads, strict=True):
        assert want.abs().sum() > 0
        _assert_close(got, want)
    return compiled


@pytest.mark.parametrize("variant", VARIANTS)
def test_whole_model_compile_trains_like_eager(variant):
    model = _model(**VARIANTS[variant])
    _assert_compiled_equals_eager(model, [model.base_model.gpart_theta_d["default"]])


def test_two_active_adapters_compile():
    model = _model()
    model.add_adapter("other", GPartConfig(d=500, target_modules=["fc1"], init_bound=0.05))
    model.base_model.set_adapter(["default", "other"])
    thetas = [model.base_model.gpart_theta_d[name] for name in ("default", "other")]
    _assert_compiled_equals_eager(model, thetas)


def test_one_dynamic_graph_serves_every_batch_shape():
    # Trainer's last, shorter batch and per-batch padding change the shapes: the custom
    # ops' fake implementations take symbolic sizes, so the first compilation serves all.
    model = _model(target_modules=["emb", "fc1", "fc2"])
    theta = model.base_model.gpart_theta_d["default"]
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(model, dynamic=True, fullgraph=True, backend=counter)
    gen = torch.Generator().manual_seed(3)
    frames = []
    for batch, length in ((2, 8), (3, 5), (5, 11)):
        images = torch.randn(batch, 4, 16, 16, generator=gen)
        tokens = torch.randint(0, WIDTH, (batch, length), generator=gen)
        labels = torch.randint(0, 3, (batch,), generator=gen)
        results = []
        for m in (model, compiled):
            loss = F.cross_entropy(m(images, tokens), labels)
            loss.backward()
            results.append((loss.detach(), theta.grad.clone()))
            theta.grad = None
        (loss, grad), (loss_c, grad_c) = results
        _assert_close(loss_c, loss)
        _assert_close(grad_c, grad)
        frames.append(counter.frame_count)
    assert frames[0] == frames[-1]  # nothing recompiled for the new shapes


def test_compiled_dropout_draws_new_masks_every_step():
    # The key is drawn inside the graph: a compiled step must not replay one mask.
    model = _model(gpart_dropout=0.5, target_modules=["fc1"])
    theta = model.base_model.gpart_theta_d["default"]
    compiled = torch.compile(model, fullgraph=True)
    first, _ = _step(compiled, [theta], seed=5)
    second, _ = _step(compiled, [theta], seed=6)
    assert first != second
    model.eval()
    evaluated = [compiled(*_inputs()[:2]) for _ in range(2)]
    assert torch.equal(*evaluated)  # no dropout outside training


def test_roberta_with_every_linear_adapted_compiles():
    # The shape that first failed: a RoBERTa whose every linear layer takes the fused path,
    # compiled as a user (or Trainer's torch_compile) does it, default mode.
    from transformers import RobertaForSequenceClassification

    config = tiny_roberta_config(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_attention_heads=4,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    base = RobertaForSequenceClassification(config)
    targets = ["query", "key", "value", "dense"]
    model = get_peft_model(base, GPartConfig(d=4096, target_modules=targets, init_bound=0.01))
    model.train()
    theta = model.base_model.gpart_theta_d["default"]
    tokens, labels = torch.randint(0, 100, (2, 16)), torch.tensor([0, 1])

    def step(m):
        out = m(input_ids=tokens, labels=labels)
        out.loss.backward()
        grad, theta.grad = theta.grad.clone(), None
        return out.loss.detach(), grad

    loss, grad = step(model)
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    loss_c, grad_c = step(torch.compile(model, backend=counter))
    assert counter.frame_count == 1  # one graph: no break anywhere in the model
    _assert_close(loss_c, loss)
    _assert_close(grad_c, grad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_reduce_overhead_captures_a_cuda_graph(dropout):
    # mode="reduce-overhead" records the step as CUDA graphs: nothing in a GPart step may
    # make inductor skip them (a CPU tensor, a sync), and replays must train like eager.
    from torch._dynamo.utils import counters

    model = _model(gpart_dropout=dropout).cuda()
    theta = model.base_model.gpart_theta_d["default"]
    images, tokens, labels = (t.cuda() for t in _inputs())

    def loss_of(m):
        return F.cross_entropy(m(images, tokens), labels)

    counters.clear()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    losses = []
    for _ in range(4):  # warm-up, record, then replays
        loss = loss_of(compiled)
        loss.backward()
        losses.append(loss.detach().clone())
        theta.grad = None
    assert not counters["inductor"]["cudagraph_skips"], dict(counters["inductor"])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:  # a replayed step never waits for the GPU
        loss_of(compiled).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    grad_c = theta.grad.clone()
    theta.grad = None
    if dropout:  # fresh masks every replay
        assert len({round(x.item(), 7) for x in losses}) > 1
        return
    loss_of(model).backward()
    torch.testing.assert_close(grad_c, theta.grad, rtol=1e-4, atol=1e-6)
