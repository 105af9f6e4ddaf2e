"""A model holding GPart layers compiles whole with `torch.compile` and trains as eagerly.

GPart's fused kernels are forced at every size (``GPART_COMPILE=on``), so each adapted
layer, however small, is GPart's opaque custom op running them (`gpart.tuner.custom_ops`),
as a large layer is by default. `fullgraph=True` fails on any graph break; the loss and
theta's gradient must equal the eager model's to 1e-6 relative (inductor compiles the rest
of the model, so its sums may be ordered differently).

Compiling is what costs here, so one model carries every variant as an adapter of its own,
all active at once, and is compiled once (dynamic shapes) for the variant, dropout and
batch-shape cases; the RoBERTa case compiles once more, with static shapes, as a user's
default `torch.compile(model)` does.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch._dynamo.testing
import torch._inductor.config
import torch.nn.functional as F
from peft import get_peft_model
from torch import nn

import gpart.tuner.fused as fused
from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer
from tiny_models import tiny_roberta_config

pytestmark = pytest.mark.slow  # two model compilations (~20 s each on 2 cores)

WIDTH = 32


@pytest.fixture(scope="module", autouse=True)
def _fused_at_every_size():
    try:  # inductor needs a C++ compiler on CPU
        torch.compile(lambda t: t * 2 + 1)(torch.ones(3))
    except Exception as err:
        pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")
    torch._dynamo.reset()  # what other modules compiled does not count here
    with fused.forced("on"):
        yield
    torch._dynamo.reset()


@pytest.fixture(autouse=True)
def _compile_must_work():
    yield
    assert fused._broken is None, f"fused kernels fell back to eager: {fused._broken}"


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, WIDTH)
        self.fc2 = nn.Linear(WIDTH, WIDTH)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.relu(self.fc1(h)))


class Net(nn.Module):
    """A patch-embedding conv and an embedding, two blocks of two linears (`layers`:
    transformer blocks to `partition_scope`), a head."""

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
# One adapter each, all active in one model (their updates add up in every layer).
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


def _config(**options) -> GPartConfig:
    return GPartConfig(**(dict(d=300, target_modules=ALL, init_bound=0.05) | options))


def _model() -> nn.Module:
    names = list(VARIANTS)
    model = get_peft_model(Net(), _config(**VARIANTS[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, _config(**VARIANTS[name]))
    model.base_model.set_adapter(names)
    return model.train()


def _thetas(model) -> dict[str, torch.Tensor]:
    return {name: model.base_model.gpart_theta_d[name] for name in VARIANTS}


def _inputs():
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 4, 16, 16, generator=gen)
    tokens = torch.randint(0, WIDTH, (2, 8), generator=gen)
    return images, tokens, torch.tensor([0, 2])


def _step(model, thetas, seed=5, inputs=None):
    """Loss and theta's gradient (per adapter) of one step from the same RNG state."""
    images, tokens, labels = inputs or _inputs()
    torch.manual_seed(seed)  # dropout keys
    loss = F.cross_entropy(model(images, tokens), labels)
    loss.backward()
    grads = [t.grad.clone() for t in thetas]
    for t in thetas:
        t.grad = None
    return loss.detach(), grads


def _assert_close(got, want):
    assert (got - want).norm() <= 1e-6 * want.norm(), ((got - want).norm(), want.norm())


@pytest.fixture(scope="module")
def compiled():
    """(model, its compiled twin, the compile counter, eager and compiled (loss, grads)).

    `fallback_random`: inductor draws its random numbers (here GPart's dropout keys) with
    eager's generator, so both runs see the same masks. Dynamic shapes from the start, so
    the one compilation also serves the batch-shape case."""
    model = _model()
    thetas = list(_thetas(model).values())
    assert all(len(m._active_terms()) > 1 for m in model.modules() if isinstance(m, GPartLayer))
    eager = _step(model, thetas)
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    with torch._inductor.config.patch(fallback_random=True):
        twin = torch.compile(model, dynamic=True, fullgraph=True, backend=counter)
        got = _step(twin, thetas)
    return model, twin, counter, eager, got


@pytest.mark.parametrize("variant", VARIANTS)
def test_whole_model_compile_trains_like_eager(compiled, variant):
    _, _, _, (loss, grads), (loss_c, grads_c) = compiled
    _assert_close(loss_c, loss)
    i = list(VARIANTS).index(variant)
    assert grads[i].abs().sum() > 0
    _assert_close(grads_c[i], grads[i])


def test_one_dynamic_graph_serves_every_batch_shape(compiled):
    # Trainer's last, shorter batch and per-batch padding change the shapes: the custom
    # ops' fake implementations take symbolic sizes, so the first compilation serves all.
    model, twin, counter, _, _ = compiled
    thetas = list(_thetas(model).values())
    frames = counter.frame_count
    gen = torch.Generator().manual_seed(3)
    for batch, length in ((3, 5), (5, 11)):
        images = torch.randn(batch, 4, 16, 16, generator=gen)
        tokens = torch.randint(0, WIDTH, (batch, length), generator=gen)
        labels = torch.randint(0, 3, (batch,), generator=gen)
        inputs = (images, tokens, labels)
        with torch._inductor.config.patch(fallback_random=True):
            loss, grads = _step(model, thetas, inputs=inputs)
            loss_c, grads_c = _step(twin, thetas, inputs=inputs)
        _assert_close(loss_c, loss)
        for got, want in zip(grads_c, grads, strict=True):
            _assert_close(got, want)
    assert counter.frame_count == frames  # nothing recompiled for the new shapes


def test_compiled_dropout_draws_new_masks_every_step(compiled):
    # The key is drawn inside the graph: a compiled step must not replay one mask.
    model, twin, _, _, _ = compiled
    thetas = list(_thetas(model).values())
    first, _ = _step(twin, thetas, seed=5)
    second, _ = _step(twin, thetas, seed=6)
    assert first != second
    model.eval()
    try:
        evaluated = [twin(*_inputs()[:2]) for _ in range(2)]
    finally:
        model.train()
    assert torch.equal(*evaluated)  # no dropout outside training


def test_roberta_with_every_linear_adapted_compiles():
    # The shape that first failed: a RoBERTa whose every linear layer takes the fused path,
    # compiled as a user (or Trainer's torch_compile) does it, default mode.
    from transformers import RobertaForSequenceClassification

    config = tiny_roberta_config(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_attention_heads=2,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    base = RobertaForSequenceClassification(config)
    targets = ["query", "key", "value", "dense"]
    model = get_peft_model(base, GPartConfig(d=1024, target_modules=targets, init_bound=0.01))
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

    model = get_peft_model(Net(), _config(gpart_dropout=dropout)).train().cuda()
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
