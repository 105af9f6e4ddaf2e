"""`python -m gpart.bench`: time training steps of GPart against its baselines.

Example (the table of docs/performance.md):

    uv run python -m gpart.bench --model_config roberta-base --targets both \
        --batch_size 16 --seq_len 128 --dtype fp32 --output bench.json
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
import transformers

from gpart.bench.dtypes import DTYPES
from gpart.bench.errors import BenchError
from gpart.bench.memory import CPU_METRIC_DEFAULT, CPU_METRICS
from gpart.bench.methods import (
    ABLATIONS,
    DEFAULT_METHODS,
    GPART_VARIANTS,
    METHODS,
    OPTIMIZERS,
    HyperParams,
)
from gpart.bench.models import EXTRA_TARGET_SETS, PRESETS, QUANTIZE, TARGET_SETS, TASKS
from gpart.bench.report import markdown, write_json
from gpart.bench.runner import QUANTIZED_OUT, BenchArgs, run

PROG = "python -m gpart.bench"


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line naming the problem, exit 2, no usage dump."""

    def error(self, message: str):  # type: ignore[override]
        raise BenchError(message)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model_config",
        default="roberta-base",
        help=f"preset ({', '.join(PRESETS)}) or a local config dir / .json (default roberta-base)",
    )
    p.add_argument("--task", choices=TASKS, default="auto", help="default: by model family")
    p.add_argument("--batch_size", type=_positive, default=16)
    p.add_argument("--seq_len", type=_positive, default=128)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    p.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default="none",
        help="the base model's linear layers in bitsandbytes 4-bit (nf4: NF4, double quant, "
        "compute in --dtype) or 8-bit (int8: Linear8bitLt), loaded as transformers' "
        "BitsAndBytesConfig loads them; full and floor do not run on such a base "
        "(default none)",
    )
    p.add_argument("--warmup", type=_non_negative, default=1, help="untimed rounds first")
    p.add_argument("--steps", type=_positive, default=5, help="timed rounds (median reported)")
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated subset of: {', '.join(METHODS)}; 'gpart' = the four GPart "
        "modes; 'ablations' = the paper's ablation variants (default: all but those)",
    )
    p.add_argument(
        "--targets",
        default="both",
        help="adapted layers: qv, all-linear, qkvo (attention q, k, v, o), or a comma-separated "
        "list of them; both = qv,all-linear (default)",
    )
    p.add_argument(
        "--num_layers",
        type=_positive,
        default=None,
        help="keep only the first N blocks of the model (e.g. a 24-layer decoder on 2 CPU "
        "cores); the per-block shapes stay the preset's",
    )
    p.add_argument("--lora_r", type=_positive, default=HyperParams.lora_r, help="LoRA rank")
    p.add_argument(
        "--lora_alpha", type=_positive, default=None, help="LoRA alpha (default: 2 * lora_r)"
    )
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument(
        "--memory_metric",
        choices=tuple(CPU_METRICS),
        default=CPU_METRIC_DEFAULT,
        help="what the CPU memory probes count: peak live tensor bytes from torch's profiler "
        "(tensors, default: exact, like the GPU's allocator count) or peak RSS (rss: all the "
        "process holds, too noisy to rank close methods); a GPU always counts tensors",
    )
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default=None,
        help="GPart's fused torch.compile kernels (sets GPART_COMPILE; default: its value, "
        "else auto = large weights only)",
    )
    p.add_argument(
        "--torch_compile",
        action="store_true",
        help="every method's model compiled whole by torch.compile (default mode), as "
        "Trainer's torch_compile does; each row's first step (compilation included) is "
        "timed apart as compile_s",
    )
    p.add_argument(
        "--gpart_d",
        type=_positive,
        default=HyperParams.gpart_d,
        help="length of theta for GPart and Uni-LoRA (default 23040, the paper's GLUE d)",
    )
    p.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        default=HyperParams.optimizer,
        help="AdamW's implementation for every method: fused (default: what the runners "
        "train with, Trainer's adamw_torch_fused), foreach, or per_tensor (torch's own "
        "choice on a CPU)",
    )
    p.add_argument("--seed", type=_non_negative, default=0)
    p.add_argument("--threads", type=_positive, default=None, help="torch threads (default: all)")
    p.add_argument("--output", type=Path, default=None, help="JSON file for the results")
    return p


def _methods(text: str) -> list[str]:
    out: list[str] = []
    for name in (t.strip() for t in text.split(",")):
        groups = {"gpart": list(GPART_VARIANTS), "ablations": list(ABLATIONS)}
        expanded = groups.get(name, [name])
        for m in expanded:
            if m not in METHODS:
                raise BenchError(f"--methods: unknown method {m!r}; valid: {', '.join(METHODS)}")
            if m not in out:
                out.append(m)
    if not out:
        raise BenchError("--methods: empty")
    return out


def _target_sets(text: str) -> list[str]:
    valid = (*TARGET_SETS, *EXTRA_TARGET_SETS)
    out: list[str] = []
    for name in (t.strip() for t in text.split(",")):
        for t in TARGET_SETS if name == "both" else [name]:
            if t not in valid:
                raise BenchError(f"--targets: unknown {t!r}; valid: {', '.join(valid)}, both")
            if t not in out:
                out.append(t)
    return out


def parse(argv: list[str] | None) -> tuple[BenchArgs, Path | None, int | None]:
    ns = build_parser().parse_args(argv)
    methods = _methods(ns.methods or ",".join(DEFAULT_METHODS))
    asked = [m for m in methods if m in QUANTIZED_OUT] if ns.methods else []
    if ns.quantize != "none" and asked:
        # Asked for by name: refused. The default list just leaves them out (runner.dropped).
        raise BenchError(
            f"--methods {','.join(asked)} with --quantize {ns.quantize}: full fine-tuning "
            "cannot train a quantized base; drop them or use --quantize none"
        )
    if ns.compile is not None:
        # An environment variable, so the memory probes' processes inherit it.
        os.environ["GPART_COMPILE"] = ns.compile
    hp = HyperParams(
        gpart_d=ns.gpart_d,
        unilora_d=ns.gpart_d,
        seed=ns.seed,
        lora_r=ns.lora_r,
        lora_alpha=ns.lora_alpha,
        optimizer=ns.optimizer,
    )
    args = BenchArgs(
        model_config=ns.model_config,
        task=ns.task,
        batch_size=ns.batch_size,
        seq_len=ns.seq_len,
        device=ns.device,
        dtype=ns.dtype,
        warmup=ns.warmup,
        steps=ns.steps,
        methods=methods,
        target_sets=_target_sets(ns.targets),
        memory=not ns.no_memory,
        torch_compile=ns.torch_compile,
        hp=hp,
        num_layers=ns.num_layers,
        quantize=ns.quantize,
        memory_metric=ns.memory_metric,
    )
    if ns.output is not None and ns.output.exists() and ns.output.is_dir():
        raise BenchError(f"--output: {str(ns.output)!r} is a directory, expected a file path")
    return args, ns.output, ns.threads


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    # transformers 5 calls its own deprecated alias inside peft's wrappers; not ours to fix.
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    transformers.utils.logging.disable_progress_bar()  # save_pretrained's shard bar
    try:
        args, output, threads = parse(argv)
        if args.device == "cuda" and not torch.cuda.is_available():
            print(f"{PROG}: CUDA is not available here; skipping (nothing run)", file=sys.stderr)
            return 0
        if threads is not None:
            torch.set_num_threads(threads)
        from gpart.bench.models import check_seq_len, load_config

        check_seq_len(load_config(args.model_config, args.num_layers), args.seq_len)
        result = run(args, log=_log)
    except BenchError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(markdown(result))
    if output is not None:
        write_json(result, output)
        _log(f"wrote {output}")
    return 0
