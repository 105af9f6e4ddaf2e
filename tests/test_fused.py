"""The fused (`torch.compile`) path computes what the eager path computes.

`GPART_COMPILE=on` forces the fused kernels at every size, `off` forbids them; the same
layer is run both ways. Ids, forward outputs and dropout masks must be bit-identical; theta
gradients too where the reduction order is the same (below `segment_sum`'s row split).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpart.tuner import fused
from gpart.tuner.hashing import hash_keyed
from gpart.tuner.ops import AdapterTerm, gpart_linear, segment_sum
from gpart.tuner.partition import Partition

pytestmark = pytest.mark.slow  # compiles a handful of kernels once (cached on disk after)


@pytest.fixture(scope="module", autouse=True)
def _needs_a_working_compiler():
    try:  # inductor needs a C++ compiler on CPU; without one GPart runs eagerly (tested)
        torch.compile(lambda t: t * 2 + 1, dynamic=True)(torch.ones(3))
    except Exception as err:
        pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")


@pytest.fixture(autouse=True)
def _compile_must_work():
    yield
    assert fused._broken is None, f"fused kernels fell back to eager: {fused._broken}"


@pytest.mark.parametrize("scheme", [1, 2, 3])
@pytest.mark.parametrize("grouping", ["random", "balanced"])
def test_fused_ids_are_bit_identical(grouping, scheme):
    part = Partition(total=3 * 2**33, d=23040, seed=42, grouping=grouping, scheme=scheme)
    if grouping == "balanced":  # a Feistel domain larger than D, so cycle walking happens
        part = Partition(total=70_001, d=997, seed=3, grouping=grouping, scheme=scheme)
    for start, count in [(0, 5000), (12_345, 4097), (part.total - 3000, 3000)]:
        with fused.forced("off"):
            ref = part.group_ids(start, count)
        with fused.forced("on"):
            got = part.group_ids(start, count)
            got32 = part.group_ids(start, count, dtype=torch.int32)
        assert got.dtype == torch.int64 and got32.dtype == torch.int32
        assert torch.equal(got, ref) and torch.equal(got32.long(), ref)
    small = Partition(total=70_001, d=997, seed=3, grouping=grouping, scheme=scheme)
    with fused.forced("off"):
        ref_sizes = small.group_sizes()
    with fused.forced("on"):
        assert torch.equal(small.group_sizes(chunk_size=9999), ref_sizes)


def test_golden_ids_through_the_fused_kernels():
    with fused.forced("on"):
        part = Partition(total=10**6, d=1000, seed=42, grouping="random", scheme=1)
        assert part.group_ids(0, 12).tolist() == [
            188,
            347,
            196,
            153,
            937,
            318,
            948,
            36,
            233,
            558,
            222,
            359,
        ]
        balanced = Partition(total=1000, d=7, seed=42, grouping="balanced", scheme=1)
        assert balanced.group_ids(0, 12).tolist() == [1, 1, 1, 4, 3, 6, 3, 1, 0, 5, 2, 5]


def _terms(theta, part, offset, shape, bias, dropout, key, ids):
    numel = shape[0] * shape[1]
    return [
        AdapterTerm(
            theta=theta,
            scales=part.scales(True),
            partition=part,
            offset=offset,
            weight_numel=numel,
            bias_numel=shape[0] if bias else 0,
            ids=ids,
            dropout=dropout,
            dropout_key=key,
        )
    ]


def _run(mode, x, w, b, theta, part, *, offset, bias, dropout, materialized, transposed):
    shape = (w.shape[1], w.shape[0]) if transposed else tuple(w.shape)
    numel = shape[0] * shape[1] + (shape[0] if bias else 0)
    with fused.forced(mode):
        ids = part.group_ids(offset, numel, dtype=torch.int32) if materialized else None
        th = theta.detach().clone().requires_grad_(True)
        xx = x.detach().clone().requires_grad_(True)
        terms = _terms(th, part, offset, shape, bias, dropout, 77 if dropout else None, ids)
        y = gpart_linear(xx, w, b, terms, transposed=transposed)
        y.pow(2).sum().backward()
    return y.detach(), th.grad, xx.grad


@pytest.mark.parametrize("grouping", ["random", "balanced"])
@pytest.mark.parametrize("materialized", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("scheme", [1, 2, 3])
def test_fused_layer_equals_eager(grouping, materialized, dropout, scheme):
    torch.manual_seed(0)
    w = torch.randn(48, 40) * 0.1
    b = torch.randn(48) * 0.1
    x = torch.randn(3, 5, 40)
    part = Partition(total=9000, d=97, seed=11, grouping=grouping, scheme=scheme)
    theta = torch.randn(97)
    kw = dict(offset=1234, bias=True, dropout=dropout, materialized=materialized, transposed=False)
    eager = _run("off", x, w, b, theta, part, **kw)
    fast = _run("on", x, w, b, theta, part, **kw)
    for e, f in zip(eager, fast, strict=True):
        assert torch.equal(e, f)


def test_fused_transposed_bf16_weight():
    torch.manual_seed(1)
    w = (torch.randn(40, 48) * 0.1).to(torch.bfloat16)  # Conv1D layout [in, out]
    x = torch.randn(2, 7, 40, dtype=torch.bfloat16)
    part = Partition(total=5000, d=64, seed=2, grouping="random")
    theta = torch.randn(64)
    kw = dict(offset=10, bias=False, dropout=0.0, materialized=False, transposed=True)
    eager = _run("off", x, w, None, theta, part, **kw)
    fast = _run("on", x, w, None, theta, part, **kw)
    assert fast[0].dtype == torch.bfloat16 and fast[1].dtype == torch.float32
    for e, f in zip(eager, fast, strict=True):
        assert torch.equal(e, f)


@pytest.mark.parametrize("grouping", ["random", "balanced"])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("need_x", [True, False])
def test_a_plain_term_takes_the_short_path_and_computes_what_the_general_one_does(
    grouping, transposed, need_x
):
    # One adapter without dropout, cached ids or bias entries runs `_plain_linear_forward`
    # and its backward; the same term marked not plain runs the general path. Same output,
    # input gradient and theta gradient, bit for bit (an unadapted bias included).
    torch.manual_seed(3)
    w = torch.randn(40, 48) * 0.1 if transposed else torch.randn(48, 40) * 0.1
    b = torch.randn(48) * 0.1
    x = torch.randn(3, 5, 40)
    part = Partition(total=9000, d=97, seed=11, grouping=grouping, scheme=3)
    theta = torch.randn(97)
    results = []
    for plain in (True, False):
        with fused.forced("on"):
            th = theta.clone().requires_grad_(True)
            xx = x.clone().requires_grad_(need_x)
            (term,) = _terms(th, part, 1234, (48, 40), False, 0.0, None, None)
            assert term.plain
            term.plain = plain
            y = gpart_linear(xx, w, b, [term], transposed=transposed)
            y.pow(2).sum().backward()
        results.append((y.detach(), th.grad, xx.grad))
    for short, general in zip(*results, strict=True):
        assert (short is None and general is None) or torch.equal(short, general)
    # What keeps a term off the short path: each of these is not plain.
    assert not _terms(th, part, 0, (48, 40), True, 0.0, None, None)[0].plain  # bias entries
    assert not _terms(th, part, 0, (48, 40), False, 0.1, 5, None)[0].plain  # dropout
    ids = part.group_ids(0, 48 * 40, dtype=torch.int32)
    assert not _terms(th, part, 0, (48, 40), False, 0.0, None, ids)[0].plain  # cached ids
    feistel = Partition(total=9000, d=97, seed=11, grouping="balanced", scheme=2)
    assert not _terms(th, feistel, 0, (48, 40), False, 0.0, None, None)[0].plain


# The tests above that compare fused kernels with the eager path, run again as AVX2 code,
# per code: (what starts pytest, which tests). Scalar loops are what an AVX2 CPU compiles
# (`fused.cpu_code_options`): every comparison. Inductor's AVX2 vector code is what a kernel
# gets where that choice is not made (another torch, a kernel compiled outside
# `fused.Kernel`): the id tests, which hold every mask the kernels select with.
_AVX2_CODE = {
    "scalar": ("", "bit_identical or golden or layer_equals_eager"),
    "vectorized": (
        "import gpart.tuner.fused as f; f.cpu_code_options = lambda inputs: {}; ",
        "bit_identical or golden",
    ),
}


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512",
    reason="runs AVX2 code on an AVX-512 CPU (on an AVX2 one the tests above run as AVX2)",
)
@pytest.mark.parametrize("code", sorted(_AVX2_CODE))
def test_fused_kernels_match_eager_in_avx2_code(tmp_path, code):
    """Inductor compiles the kernels for the CPU's vector ISA, and its AVX2 vector code
    inverted `torch.where` on `>=` masks (gpart.tuner.hashing, AVX2 MASKS) where its AVX-512
    code was right: the kernel-against-eager tests run again with ``ATEN_CPU_CAPABILITY=
    avx2`` (ATen's and inductor's CPU code for AVX2), in a fresh inductor cache, since the
    cache does not key compiled kernels on that variable."""
    env = {
        **os.environ,
        "ATEN_CPU_CAPABILITY": "avx2",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "GPART_COMPILE": "auto",
    }
    isa = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    ran_as = subprocess.run([sys.executable, "-c", isa], env=env, capture_output=True, text=True)
    assert ran_as.stdout.strip() == "AVX2", ran_as.stdout + ran_as.stderr
    tests = Path(__file__).resolve()
    argv = ["-q", "-x", "--tb=short", "-p", "no:cacheprovider", "-o", "addopts="]
    prelude, selection = _AVX2_CODE[code]
    argv += ["--show-capture=no", str(tests), "-k", selection]
    run = f"{prelude}import pytest, sys; sys.exit(pytest.main({argv!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", run],
        cwd=tests.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]


def test_avx2_cpu_kernels_are_compiled_as_scalar_loops(monkeypatch):
    # Where the vector ISA is AVX2, inductor's vectorized int64 kernels run lane by lane and
    # take twice the scalar loops' time (`fused.cpu_code_options`); elsewhere it decides.
    cpu, meta = [torch.ones(3), 4], [torch.ones(3, device="meta")]
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert fused.cpu_code_options(cpu) == {"cpp.simdlen": 1}
    assert fused.cpu_code_options(meta) == {}  # (a GPU's kernels: not C++ loops)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert fused.cpu_code_options(cpu) == {}


def test_segment_sum_rows_equal_index_add():
    torch.manual_seed(2)
    n, d = 4 * 2**14 + 3, 500  # large enough for the row split, with a remainder
    ids = torch.randint(0, d, (n,))
    flat = torch.randn(n, dtype=torch.float64)
    ref = torch.zeros(d, dtype=torch.float64).index_add_(0, ids, flat)
    got = segment_sum(ids, flat, d)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    again = segment_sum(ids.int(), flat, d)
    assert torch.equal(got, again)  # deterministic, int32 or int64 ids


def test_env_policy():
    with fused.forced("off"):
        assert not fused.enabled(1 << 30, torch.device("cpu"))
    with fused.forced("on"):
        assert fused.enabled(1, torch.device("cpu"))
    with fused.forced("auto"):
        assert fused.enabled(fused.MIN_NUMEL, torch.device("cpu"))
        assert not fused.enabled(fused.MIN_NUMEL - 1, torch.device("cpu"))
        assert not fused.enabled(fused.MIN_NUMEL, torch.device("meta"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("grouping", ["random", "balanced"])
def test_fused_cuda_bf16_equals_eager_cpu_ids_and_close_outputs(grouping):
    part = Partition(total=70_001, d=997, seed=3, grouping=grouping)
    with fused.forced("off"):
        ref = part.group_ids(100, 60_000)
    with fused.forced("on"):
        got = part.group_ids(100, 60_000, device="cuda")
    assert torch.equal(got.cpu(), ref)  # the partition is the same on every device
    torch.manual_seed(3)
    w = (torch.randn(96, 80) * 0.1).to(torch.bfloat16)
    x = torch.randn(4, 6, 80, dtype=torch.bfloat16)
    theta = torch.randn(997)
    kw = dict(offset=500, bias=False, dropout=0.2, materialized=False, transposed=False)
    eager = _run("off", x.cuda(), w.cuda(), None, theta.cuda(), part, **kw)
    fast = _run("on", x.cuda(), w.cuda(), None, theta.cuda(), part, **kw)
    assert torch.equal(eager[0], fast[0])  # same W, same matmul
    torch.testing.assert_close(eager[1], fast[1])  # atomics: summation order may differ


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["on", "off"])
@pytest.mark.parametrize("kind", ["random", "balanced", "materialized"])
def test_a_cuda_training_step_never_waits_for_the_gpu(mode, kind):
    # A host-device sync per layer (a blocking copy of a Python scalar, .item(), nonzero)
    # stalls the GPU while Python queues the next kernel: GPart must run its forward and
    # backward without one, with dropout on, fused or eager; stateless balanced grouping
    # too once its first step has counted its walk's stages.
    materialized = kind == "materialized"
    grouping = "balanced" if kind == "balanced" else "random"
    part = Partition(total=600_000, d=4099, seed=5, grouping=grouping)
    w = (torch.randn(512, 1024, device="cuda") * 0.02).to(torch.bfloat16)
    x = torch.randn(4, 64, 1024, device="cuda", dtype=torch.bfloat16)
    theta = torch.randn(4099, device="cuda").requires_grad_(True)
    ids = part.group_ids(7, w.numel(), "cuda", torch.int32) if materialized else None
    terms = _terms(theta, part, 7, tuple(w.shape), False, 0.1, 77, ids)
    terms[0].scales = terms[0].scales.cuda()  # a model's scales live on its device

    def step():
        with fused.forced(mode):
            gpart_linear(x, w, None, terms, transposed=False).float().pow(2).sum().backward()

    step()  # compiles; may sync
    torch.cuda.synchronize()
    theta.grad = None
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0


@pytest.mark.parametrize("grouping", ["random", "balanced"])
def test_a_step_after_an_inference_mode_evaluation_trains_the_same(grouping):
    # The kernels' per-layer constants are made once and reused: the first ones may be
    # made under inference_mode (an evaluation before training) and must still serve
    # autograd afterwards, with the same result as a process that never evaluated.
    torch.manual_seed(0)
    w, x = torch.randn(48, 40) * 0.1, torch.randn(3, 5, 40)
    part = Partition(total=1920 + 7, d=97, seed=17, grouping=grouping)
    theta = torch.randn(97)
    kw = dict(offset=7, bias=False, dropout=0.2, materialized=False, transposed=False)
    fresh = _run("on", x, w, None, theta, part, **kw)
    with torch.inference_mode(), fused.forced("on"):
        terms = _terms(theta, part, 7, tuple(w.shape), False, 0.0, None, None)
        gpart_linear(x, w, None, terms)
    again = _run("on", x, w, None, theta, part, **kw)
    for a, b in zip(fresh, again, strict=True):
        assert torch.equal(a, b)


def _k_hash_gather_add(w, coef, keyed0, out_dtype):
    keyed = torch.arange(w.numel(), dtype=torch.int64, device=w.device) + keyed0
    ids = hash_keyed(keyed) & (coef.numel() - 1)  # coef's length: a power of two
    return (w + coef[ids].view(w.shape)).to(out_dtype), ids


def test_kernel_calls_after_the_first_skip_torch_compile_and_match_eager():
    # After its first call a kernel runs inductor's generated code directly, without
    # torch.compile's per-call wrapper (a step makes a few calls per adapted layer), for any
    # shape of the same rank: a square weight first must not give a graph for square ones
    # only. Every result equals the eager function's bit for bit.
    kernel = fused.kernel(_k_hash_gather_add)
    coef, keyed0 = torch.randn(1024), fused.scalar(-(2**62) + 12_345, "cpu")
    shapes = [(64, 64), (48, 80), (256, 64), (3, 7)]

    def check(shape, dtype=torch.float32):
        w = torch.randn(shape, dtype=dtype)
        got = kernel(w, coef, keyed0, torch.float32)
        want = _k_hash_gather_add(w, coef, keyed0, torch.float32)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), shape

    check(shapes[0])  # compiles

    def through_torch_compile(*args):
        raise AssertionError("called through torch.compile")

    compiled, kernel._compiled = kernel._compiled, through_torch_compile
    try:
        for shape in shapes:
            check(shape)
    finally:
        kernel._compiled = compiled
    # Another dtype is another graph: through torch.compile, then direct as well.
    check((5, 6), torch.float64)


def test_a_direct_kernel_entry_serves_only_the_autocast_state_it_was_checked_in():
    # dynamo guards on autocast (a graph traced under it may differ): the first call under
    # autocast goes through torch.compile, and only then runs directly.
    kernel = fused.kernel(_k_hash_gather_add)
    coef, keyed0 = torch.randn(1024), fused.scalar(7, "cpu")
    w = torch.randn(16, 24)
    want = _k_hash_gather_add(w, coef, keyed0, torch.float32)

    def check():
        got = kernel(w, coef, keyed0, torch.float32)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))

    check()  # compiles; a direct entry without autocast
    calls = []
    compiled = kernel._compiled

    def counted(*args):
        calls.append(args)
        return compiled(*args)

    kernel._compiled = counted
    try:
        check()
        assert calls == []  # direct
        with torch.autocast("cpu", dtype=torch.bfloat16):
            check()
            check()
        assert len(calls) == 1  # through torch.compile once, then direct
    finally:
        kernel._compiled = compiled


@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_changed_theta_is_seen_by_the_next_forward(mode):
    # `s * theta` is computed once per step and shared by every layer: an in-place update
    # (the optimizer's step), a `.data` assignment or another theta must each give the
    # forward of the theta it now holds.
    torch.manual_seed(0)
    w, x = torch.randn(48, 40) * 0.1, torch.randn(3, 40)
    part = Partition(total=1920, d=97, seed=5, grouping="random")
    theta, scales = torch.randn(97), part.scales(True)

    def forward(t):
        term = AdapterTerm(t, scales, part, offset=0, weight_numel=1920, bias_numel=0)
        with fused.forced(mode):
            return gpart_linear(x, w, None, [term])

    def fresh(values):
        return forward(values.clone())

    first = forward(theta)
    with torch.no_grad():
        theta.add_(0.5)
    assert torch.equal(forward(theta), fresh(theta)) and not torch.equal(forward(theta), first)
    theta.data = torch.randn(97)
    assert torch.equal(forward(theta), fresh(theta))


@pytest.mark.parametrize("mode", ["on", "off"])
def test_theta_changed_unseen_by_its_version_counter_reaches_the_next_forward(mode):
    # The layers of one model forward share `s * theta`; nothing of it may outlive that
    # forward: fused AdamW's step (Trainer's default on many machines) and `.data.copy_`
    # change theta while its version counter and address stay as they were.
    import copy

    from peft import get_peft_model

    from gpart import GPartConfig
    from tiny_models import tiny_roberta, tokens

    torch.manual_seed(0)
    model = get_peft_model(tiny_roberta(), GPartConfig(d=64, init_bound=0.3, task_type="SEQ_CLS"))
    theta = model.base_model.gpart_theta_d["default"]
    x = tokens()
    optimizer = torch.optim.AdamW([theta], lr=0.1, fused=True)
    with fused.forced(mode):
        first = model(input_ids=x).logits
        first.sum().backward()
        version = theta._version
        optimizer.step()
        assert theta._version == version  # what the shared product must not rely on
        stepped = model(input_ids=x).logits
        assert not torch.equal(stepped, first)
        assert torch.equal(stepped, copy.deepcopy(model)(input_ids=x).logits)
        theta.data.copy_(torch.randn_like(theta))
        assert torch.equal(model(input_ids=x).logits, copy.deepcopy(model)(input_ids=x).logits)
