"""Peak training memory of one method, measured in a fresh process of its own.

A process that has already run other methods holds freed memory in its allocator (glibc
keeps it, torch's CUDA cache keeps it), which would hide a method's real peak. So each
method is probed in a process forked from a clean server that has only imported the
libraries (multiprocessing's forkserver): import cost is paid once, and no probe sees
another's heap.

The figure is the peak above the bare base model (weights and the input batch already
resident): adapter state, trainable parameters' gradients, optimizer state, activations
and every temporary of a training step. One-time costs are kept out of it: the probe first
runs the method once on the same model and throws that setup away (compiled kernels,
thread pools and library caches stay loaded, as in a long training run), returns freed heap
memory to the OS (glibc `malloc_trim`), and only then takes the baseline.

* CPU, ``tensors`` (the default): the peak of live tensor bytes, from the allocation and
  free events torch's profiler records (``profile_memory=True``) from just before the
  measured setup is built to the end of its timed step, i.e. what
  `torch.cuda.max_memory_allocated` counts on a GPU: adapter state, optimizer moments,
  gradients, activations, temporaries. Exact and repeatable, so two methods' peaks can be
  compared to the byte; memory that torch does not allocate (a BLAS library's scratch,
  the allocator's own slack) is not in it.
* CPU, ``rss``: resident set size. Linux's peak-RSS counter (VmHWM) is reset after the
  measured setup's own warm-up step (`/proc/self/clear_refs`), then read after a timed
  step; state that persists from the warm-up (optimizer moments) is counted. What the
  process really holds, but glibc's heap keeps freed blocks and maps pages lazily, so two
  probes of the same setup can differ by hundreds of MiB on a large model: it cannot
  decide a small difference.
* CUDA: `torch.cuda.max_memory_allocated()` (tensors only, not the allocator's cache),
  with the same baseline and warm-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

CPU_METRICS = {
    "tensors": "peak live tensor bytes above the base model (torch profiler allocation events, "
    "fresh process, after a warm-up step)",
    "rss": "peak RSS above the base model (VmHWM, fresh process, after a warm-up step)",
}
CPU_METRIC_DEFAULT = "tensors"
CUDA_METRIC = "torch.cuda.max_memory_allocated above the base model (fresh process)"
# The record_function label around the timed steps: where the tensor peak is read.
_TIMED = "gpart.bench.memory.timed"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS is live memory only."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then over-states the baseline
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # "5": reset the peak RSS to the current RSS
        return True
    except OSError:
        return False


@dataclass
class ProbeRequest:
    """Everything a probe process needs to rebuild one setup (picklable)."""

    model_config: str
    task: str
    method: str
    target_set: str | None
    batch_size: int
    seq_len: int
    device: str
    dtype: str
    hp: Any  # methods.HyperParams
    threads: int | None = None  # torch threads (None: the library default)
    num_layers: int | None = None  # the config's stack, shortened (None: as configured)
    quantize: str = "none"  # the base's bitsandbytes storage (models.QUANTIZE)
    checkpoint_dir: str | None = None  # where the quantized base is loaded from
    warmup: int = 1
    steps: int = 1
    metric: str = CPU_METRIC_DEFAULT  # on a CPU: "tensors" or "rss" (CPU_METRICS)
    torch_compile: bool = False  # the model compiled whole (methods.Setup.compile)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Moves every object alive now (the libraries, the model, the setups) out of the
    garbage collector's sight (`gc.freeze`) until the block ends.

    A full collection walks every tracked object: with torch, transformers and peft loaded
    that walk outlasts a tiny model's whole step, and one may start before any step.
    Frozen, a collection walks only what the steps made, and one triggered inside a timed
    step cannot walk the libraries either. Unfrozen afterwards, so the setups can be freed.
    Both the benchmark's timing loop and each memory probe run inside it.
    """
    gc.collect()  # garbage that exists now is freed, not frozen
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def probe(req: ProbeRequest) -> dict[str, Any]:
    """Runs in the child: peak memory of `req.method` (bytes above the base model)."""
    import warnings

    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    if req.threads is not None:
        torch.set_num_threads(req.threads)
    # The libraries the server loaded, out of the collector's sight: each collection below
    # walks only what the probe builds. The figure is unchanged: both its baseline and its
    # peak are read inside.
    with frozen_heap():
        return _probe(req)


def _probe(req: ProbeRequest) -> dict[str, Any]:
    from gpart.bench.dtypes import DTYPES
    from gpart.bench.methods import build_setup
    from gpart.bench.models import build_workload

    device = torch.device(req.device)
    spec, base, batch = build_workload(
        req.model_config,
        req.task,
        device,
        DTYPES[req.dtype],
        seed=req.hp.seed,
        batch_size=req.batch_size,
        seq_len=req.seq_len,
        num_layers=req.num_layers,
        quantize=req.quantize,
        checkpoint_dir=req.checkpoint_dir,
    )
    cuda = device.type == "cuda"
    # One throw-away run: compiles kernels and loads library caches, which a long training
    # run pays once and which are not the method's memory.
    build_setup(req.method, req.target_set, base, spec, req.hp, req.torch_compile).step(batch)
    _trim_heap()
    tensors = not cuda and req.metric == "tensors"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
    else:  # the tensor count starts at 0 with its profile: nothing of the method exists yet
        before = 0 if tensors else _status_kib("VmRSS") * 1024
    with _profile_memory() if tensors else contextlib.nullcontext() as prof:
        setup = build_setup(req.method, req.target_set, base, spec, req.hp, req.torch_compile)
        for _ in range(req.warmup):
            setup.step(batch)
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        reset = tensors or cuda or _reset_peak_rss()
        with record_function(_TIMED) if tensors else contextlib.nullcontext():
            for _ in range(req.steps):
                setup.step(batch)
    if tensors:
        # The raw events (torch.autograd.profiler reads the same ones to attribute memory).
        peak = peak_live_bytes(prof.profiler.kineto_results.events(), _TIMED)
    elif cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(device)
    else:
        # Without clear_refs the lifetime peak still bounds the step's peak from above.
        peak = _status_kib("VmHWM") * 1024
    return {"peak_bytes": int(peak - before), "peak_reset": reset}


def _profile_memory():
    """torch's profiler recording every CPU tensor allocation and free."""
    return profile(activities=[ProfilerActivity.CPU], profile_memory=True)


def peak_live_bytes(events, window: str) -> int:
    """The highest running sum of the profiler's allocation events (`[memory]`: +bytes
    allocated, -bytes freed) reached inside the event named `window`, counted from the
    start of the profile. A block allocated before the profile and freed inside it has no
    event (torch warns so), which can only raise the figure: the probe starts the profile
    with nothing of the method allocated yet, and whatever the bare model holds stays."""
    marks = [e for e in events if e.name() == window]
    if len(marks) != 1:
        raise RuntimeError(f"expected one profiler event {window!r}, found {len(marks)}")
    begin, end = marks[0].start_ns(), marks[0].end_ns()
    live = peak = 0
    for e in sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns()):
        if e.start_ns() > end:
            break
        live += e.nbytes()
        if e.start_ns() >= begin:
            peak = max(peak, live)
    return max(peak, 0)


class Prober:
    """A forkserver whose children each probe one setup."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        # Imported once in the server, so forked probes start in milliseconds.
        self._ctx.set_forkserver_preload(["gpart.bench.memory", "gpart.bench.runner"])

    def run(self, req: ProbeRequest) -> dict[str, Any]:
        with self._ctx.Pool(processes=1, maxtasksperchild=1) as pool:
            return pool.apply(probe, (req,))


def metric_name(device: torch.device, metric: str = CPU_METRIC_DEFAULT) -> str:
    return CUDA_METRIC if device.type == "cuda" else CPU_METRICS[metric]


def available() -> bool:
    return os.path.exists("/proc/self/status")
