"""The benchmark proper: build every setup, time interleaved steps, collect the figures."""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import peft
import scipy.stats
import torch
import transformers

from gpart.bench.dtypes import DTYPES
from gpart.bench.errors import BenchError
from gpart.bench.memory import (
    CPU_METRIC_DEFAULT,
    Prober,
    ProbeRequest,
    frozen_heap,
    metric_name,
)
from gpart.bench.methods import (
    DESCRIPTIONS,
    UNTARGETED,
    HyperParams,
    Setup,
    adapter_state_bytes,
    build_setup,
    saved_bytes,
    trainable_parameters,
)
from gpart.bench.models import build_workload


@dataclass
class BenchArgs:
    model_config: str = "roberta-base"
    task: str = "auto"
    batch_size: int = 16
    seq_len: int = 128
    device: str = "cpu"
    dtype: str = "fp32"
    warmup: int = 1
    steps: int = 5
    methods: list[str] = field(default_factory=list)
    target_sets: list[str] = field(default_factory=list)
    memory: bool = True
    hp: HyperParams = field(default_factory=HyperParams)
    num_layers: int | None = None  # keep the first blocks of the config's stack
    quantize: str = "none"  # the base model's storage: none, nf4 or int8 (models.QUANTIZE)
    memory_metric: str = CPU_METRIC_DEFAULT  # on a CPU: tensors or rss (memory.CPU_METRICS)
    torch_compile: bool = False  # every method's model compiled whole (Setup.compile)


# Under --quantize, full fine-tuning and its floor have no row: said in the JSON ("dropped").
NO_TRAINABLE_BASE = (
    "not run under --quantize: a bitsandbytes 4-bit or 8-bit base holds packed integer "
    "weights that take no gradient and no optimizer step, so full fine-tuning, and its "
    "forward+backward floor, do not exist on it (QLoRA trains adapters only); the --quantize "
    "none run of the same model gives the floor"
)
QUANTIZED_OUT = ("full", "floor")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(__file__),
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def dropped(args: BenchArgs) -> dict[str, str]:
    """Requested methods that do not run, with the reason (recorded in the JSON)."""
    if args.quantize == "none":
        return {}
    return {name: NO_TRAINABLE_BASE for name in args.methods if name in QUANTIZED_OUT}


def plan(args: BenchArgs) -> list[tuple[str, str | None]]:
    """(method, target set) pairs, untargeted methods once."""
    out: list[tuple[str, str | None]] = []
    skip = dropped(args)
    for name in args.methods:
        if name in skip:
            continue
        if name in UNTARGETED:
            out.append((name, None))
    for target_set in args.target_sets:
        for name in args.methods:
            if name not in UNTARGETED:
                out.append((name, target_set))
    return out


def run(args: BenchArgs, log=print) -> dict[str, Any]:
    if not plan(args):
        raise BenchError(
            f"--methods: nothing to run with --quantize {args.quantize} "
            f"({', '.join(dropped(args))} need a trainable base); add lora or gpart"
        )
    for name, reason in dropped(args).items():
        log(f"{name}: {reason}")
    if args.quantize == "none":
        return _run(args, None, log)
    # The random-init base, saved once: the timing run and every memory probe load the
    # same checkpoint through transformers' quantizer (models.ModelSpec.build).
    with tempfile.TemporaryDirectory(prefix="gpart-bench-base-") as checkpoint:
        return _run(args, checkpoint, log)


def _run(args: BenchArgs, checkpoint: str | None, log) -> dict[str, Any]:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    spec, base, batch = build_workload(
        args.model_config,
        args.task,
        device,
        dtype,
        seed=args.hp.seed,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        num_layers=args.num_layers,
        quantize=args.quantize,
        checkpoint_dir=checkpoint,
    )

    setups: list[Setup] = []
    for name, target_set in plan(args):
        try:
            setups.append(build_setup(name, target_set, base, spec, args.hp, args.torch_compile))
        except ValueError as err:  # e.g. d larger than the adapted space: a user mistake
            raise BenchError(f"{name} [{target_set or '-'}]: {err}") from None
        log(f"built {setups[-1].label}")

    # Compiled: each setup's first step compiles it, timed alone (compile_s, compilation
    # and one step together) before the rounds, so no round holds a compilation.
    compile_s: dict[str, float] = {}
    if args.torch_compile:
        for setup in setups:
            _sync(device)
            t0 = time.perf_counter()
            setup.step(batch)
            _sync(device)
            compile_s[setup.label] = time.perf_counter() - t0
            log(f"compiled {setup.label}: first step {compile_s[setup.label]:.1f} s")

    # Interleaved: round r runs every setup once (rotating the start), so slow drifts of a
    # shared machine hit every method alike. Warm-up rounds are not recorded.
    times: dict[str, list[float]] = {s.label: [] for s in setups}
    with frozen_heap():
        for r in range(args.warmup + args.steps):
            k = r % len(setups)
            for setup in setups[k:] + setups[:k]:
                gc.collect()  # the previous step's garbage, not collected inside this one
                _sync(device)
                t0 = time.perf_counter()
                setup.step(batch)
                _sync(device)
                dt = time.perf_counter() - t0
                if r >= args.warmup:
                    times[setup.label].append(dt)
            phase = "warm-up" if r < args.warmup else "timed"
            log(f"round {r + 1}/{args.warmup + args.steps} ({phase}) done")

    rows: list[dict[str, Any]] = []
    unit = "images" if spec.task == "image_cls" else "tokens"
    units = args.batch_size * (1 if unit == "images" else args.seq_len)
    for setup in setups:
        total_state, local_state = adapter_state_bytes(setup, base)
        rows.append(
            {
                "method": setup.name,
                "target_set": setup.target_set,
                "label": setup.label,
                "description": DESCRIPTIONS[setup.name],
                "step_s_median": statistics.median(times[setup.label]),
                # training throughput in the task's unit: tokens (text) or images per second
                "throughput_per_s": units / statistics.median(times[setup.label]),
                "step_s": times[setup.label],
                "trainable_params": sum(p.numel() for p in trainable_parameters(setup.model)),
                "adapted_weights": setup.adapted_weights,
                "state_bytes": total_state,
                "state_bytes_per_weight": local_state / max(setup.adapted_weights, 1),
                "saved_bytes": saved_bytes(setup),
                "compile_s": compile_s.get(setup.label),  # None: not compiled
                **setup.extra,
            }
        )
    del setups
    gc.collect()

    if args.memory:
        prober = Prober()
        for row in rows:
            req = ProbeRequest(
                model_config=args.model_config,
                task=args.task,
                method=row["method"],
                target_set=row["target_set"],
                batch_size=args.batch_size,
                seq_len=args.seq_len,
                device=args.device,
                dtype=args.dtype,
                hp=args.hp,
                threads=torch.get_num_threads(),
                num_layers=args.num_layers,
                quantize=args.quantize,
                checkpoint_dir=checkpoint,
                metric=args.memory_metric,
                torch_compile=args.torch_compile,
            )
            row.update(prober.run(req))
            log(f"memory {row['label']}: {row['peak_bytes'] / 2**20:.0f} MiB")
    else:
        for row in rows:
            row["peak_bytes"] = None

    _add_ratios(rows)
    return {
        "args": {**asdict(args), "task": spec.task},
        "environment": {
            "device": _device_name(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
            "git_sha": _git_sha(),
            "gpart_compile": os.environ.get("GPART_COMPILE", "auto"),
            "bitsandbytes": _bitsandbytes_version() if args.quantize != "none" else None,
        },
        "memory_metric": metric_name(device, args.memory_metric) if args.memory else None,
        "floor": None
        if args.quantize != "none"
        else "full fine-tuning's forward+backward without its optimizer step",
        "dropped": dropped(args),
        "throughput_unit": unit,
        "rows": rows,
    }


def _bitsandbytes_version() -> str:
    import bitsandbytes

    return bitsandbytes.__version__


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # The vector ISA the CPU kernels run (ATen's and inductor's): AVX2 or AVX512 on x86,
    # which moves the ratios of a launch-bound step (GPart's fused hash is int64 arithmetic
    # that AVX2 has no vector multiply for), so a table names it.
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{_cpu_name()} ({os.cpu_count()} logical CPUs, {isa})"


def median_interval(values: list[float], confidence: float = 0.95) -> list[float] | None:
    """Distribution-free confidence interval of the median of `values`: two of their order
    statistics, chosen from the binomial law (`scipy.stats.quantile_test`); no assumption
    on how the noise is distributed, which on a shared machine is skewed. None when there
    are too few values for the confidence (fewer than 6 at 95 %)."""
    if len(values) < 2:
        return None
    median = statistics.median(values)
    ci = scipy.stats.quantile_test(values, q=median, p=0.5).confidence_interval(confidence)
    low, high = float(ci.low), float(ci.high)
    return None if math.isnan(low) or math.isnan(high) else [low, high]


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """Ratios of medians, plus the median of per-round ratios ("paired"), their range and
    the median's 95 % interval: both steps of a pair ran within one round, so the paired
    figure is the more robust on a busy machine, and the interval says how far one run
    decides a target."""
    floor = next((r for r in rows if r["method"] == "floor"), None)
    lora = {r["target_set"]: r for r in rows if r["method"] == "lora"}
    for row in rows:
        for key, ref in (("floor", floor), ("lora", lora.get(row["target_set"]))):
            if ref is None:
                row[f"ratio_{key}"] = row[f"ratio_{key}_paired"] = None
                row[f"ratio_{key}_paired_range"] = row[f"ratio_{key}_paired_ci95"] = None
                continue
            row[f"ratio_{key}"] = row["step_s_median"] / ref["step_s_median"]
            rounds = [a / b for a, b in zip(row["step_s"], ref["step_s"], strict=True)]
            row[f"ratio_{key}_paired"] = statistics.median(rounds)
            # The spread of the rounds, and how well their median is known: a target
            # inside the interval is not told apart from this run's noise.
            row[f"ratio_{key}_paired_range"] = [min(rounds), max(rounds)]
            row[f"ratio_{key}_paired_ci95"] = median_interval(rounds)
        # The memory target ("GPart's peak <= LoRA's") as a number: peak over LoRA's peak.
        ref = lora.get(row["target_set"])
        peaks = (row.get("peak_bytes"), ref and ref.get("peak_bytes"))
        row["peak_ratio_lora"] = peaks[0] / peaks[1] if None not in peaks and peaks[1] else None
