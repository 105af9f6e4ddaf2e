"""When GPart's elementwise work runs as fused `torch.compile` kernels, and the fallback.

Rebuilding `W0 + dW` from the hash costs ~15 elementwise int64 ops per weight entry. Run
eagerly, each is a full pass over memory and the hash alone costs as much as the layer's
matmul; fused by `torch.compile` (one C++/OpenMP loop on CPU, one Triton kernel on CUDA)
it is one read of `W0` and one write of `W`. The kernels are plain torch functions: run
eagerly they compute exactly the same integers and floats (no contraction of `a * b + c`
into FMA: inductor compiles with `-ffp-contract=off`), so compiling changes speed, never
results. The partition is pinned by `tests/test_partition.py` either way.

Policy, from the environment variable ``GPART_COMPILE`` (read at every call):

* ``auto`` (default): fused kernels for tensors of at least `MIN_NUMEL` entries (a 256 x
  256 weight), eager below, where compiling would cost more than it saves (tiny test
  models never compile). The kernels are shape-generic, so a model compiles them once
  whatever its layer sizes. From 256 x 256 up a layer's forward and backward are already
  faster fused, the eager path's pass over memory per int64 op outweighing a kernel call,
  which is why the threshold is not higher (the measurement: CHANGELOG.md, "per-layer
  overhead").
* ``1`` / ``on``: fused kernels for every size (tests use it to compare both paths).
* ``0`` / ``off``: never compile.

Compilation is lazy (first use, then cached in-process and on disk by inductor). If it
fails (no C++ compiler, an unsupported device), GPart warns once and runs eagerly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

ENV = "GPART_COMPILE"
MIN_NUMEL = 1 << 16
_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}
_broken: str | None = None  # why compilation was given up, once it failed


def mode() -> str:
    """'auto', 'on' or 'off'."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in _ON:
        return "on"
    if value in _OFF:
        return "off"
    return "auto"


def enabled(numel: int, device: torch.device) -> bool:
    """Whether an op over `numel` entries on `device` should use the fused kernels."""
    if _broken is not None or device.type not in ("cpu", "cuda"):
        return False
    m = mode()
    if m == "off":
        return False
    return m == "on" or numel >= MIN_NUMEL


@contextlib.contextmanager
def forced(value: str) -> Iterator[None]:
    """Temporarily set ``GPART_COMPILE`` (tests, benchmark warm-up)."""
    old = os.environ.get(ENV)
    os.environ[ENV] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


class Kernel:
    """A pure tensor function, compiled on first call; eager if compiling fails."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any] | None = None) -> None:
        self.fn = fn
        self.options = options
        self._compiled: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        global _broken
        if _broken is not None:
            return self.fn(*args)
        if self._compiled is None:
            # dynamic: one compiled graph serves every layer shape; scalars arrive as 0-d
            # tensors so offsets and seeds never trigger a recompile.
            self._compiled = torch.compile(
                self.fn, dynamic=True, fullgraph=True, options=self.options
            )
        try:
            # No autograd inside (the callers' own autograd functions differentiate): one
            # graph whatever the caller's grad mode, not one per mode.
            with torch.no_grad():
                return self._compiled(*args)
        except Exception as err:  # no compiler, unsupported backend, ...: stay correct
            _broken = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            warnings.warn(
                f"GPart: torch.compile of its fused kernels failed ({_broken}); running "
                f"eagerly (slower, same results). Set {ENV}=0 to skip the attempt.",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.fn(*args)


def scalar(value: int, device: torch.device | str) -> torch.Tensor:
    """`value` as a 0-d int64 tensor on `device`, for a kernel's scalar argument.

    Not ``torch.tensor(value, device=device)``: on CUDA that copies from host memory and
    synchronizes the stream (PyTorch waits for every blocking copy), once per call, i.e.
    several times per adapted layer and step: the GPU then idles while Python catches up,
    a wait per layer that LoRA's plain matmuls never pay (CHANGELOG.md, "the first GPU
    run").
    ``torch.full`` passes the value as a kernel argument instead: no copy, no wait. The
    values are per-layer constants (offsets, seeds, ``d``), so each is made once per device
    and reused (kernels never write their inputs).
    """
    return _scalar(int(value), concrete_device(device))


def concrete_device(device: torch.device | str) -> torch.device:
    """`device` with its index (``cuda`` -> ``cuda:<current>``): the key of a per-device
    cache, whose tensors must stay on the GPU they were made on."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@functools.lru_cache(maxsize=8192)
def _scalar(value: int, device: torch.device) -> torch.Tensor:
    # A normal tensor even when first asked for under inference_mode (an evaluation before
    # training), which autograd-recorded code could not use later.
    with torch.inference_mode(False), torch.no_grad():
        return torch.full((), value, dtype=torch.int64, device=device)


def kernel(fn: Callable[..., Any], *, ids_in_range: bool = False) -> Kernel:
    """`ids_in_range`: every gather index is in bounds by construction (callers check the
    table length), so inductor's per-element bounds assertion is dropped (~20% faster)."""
    return Kernel(fn, {"assert_indirect_indexing": False} if ids_in_range else None)
