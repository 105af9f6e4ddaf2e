"""The benchmark's outputs: a markdown table for people, a JSON file for later comparison."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def _size(n: int) -> str:
    if n < 2**10:
        return f"{n} B"
    if n < 2**20:
        return f"{n / 2**10:.1f} KiB"
    return f"{n / 2**20:,.1f} MiB"


def _throughput(r: dict[str, Any]) -> str:
    """'-' for results written before the benchmark recorded it, not a rate of 0."""
    rate = r.get("throughput_per_s")
    return "-" if rate is None else f"{rate:,.0f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _paired(r: dict[str, Any], key: str) -> str:
    """`median [95 % interval] (min-max)` of the per-round ratios; '-' without a reference
    row (or for results written before the range was recorded), no interval for results
    written before it was, or with too few rounds for one."""
    paired, spread = r.get(f"ratio_{key}_paired"), r.get(f"ratio_{key}_paired_range")
    if paired is None or spread is None:
        return "-"
    ci = r.get(f"ratio_{key}_paired_ci95")
    interval = "" if ci is None else f" [{ci[0]:.2f}-{ci[1]:.2f}]"
    return f"{paired:.2f}{interval} ({spread[0]:.2f}-{spread[1]:.2f})"


def markdown(result: dict[str, Any]) -> str:
    args = result["args"]
    env = result["environment"]
    # Image models take the config's image size, not a sequence length.
    shape = "images" if args["task"] == "image_cls" else f"x {args['seq_len']}"
    quantize = args.get("quantize", "none")  # results written before --quantize: none
    base = "" if quantize == "none" else f", base {quantize} (bitsandbytes)"
    compiled = bool(args.get("torch_compile"))  # results written before it: not compiled
    if compiled:
        base += ", compiled whole (torch.compile)"
    # Results written before --optimizer: torch's default AdamW (per tensor on a CPU).
    optimizer = args.get("hp", {}).get("optimizer")
    if optimizer is not None:
        base += f", AdamW {optimizer.replace('_', ' ')}"
    lines = [
        f"model `{args['model_config']}` ({args['task']}), batch {args['batch_size']} "
        f"{shape}, {args['dtype']}{base}, {env['device']}, {env['threads']} threads; "
        f"median of {args['steps']} interleaved steps after {args['warmup']} warm-up",
        "",
        f"| method | targets | step (s) | {result.get('throughput_unit', 'items')}/s "
        "| x floor | x LoRA | x LoRA, paired | peak mem (MiB) | peak x LoRA | trainable "
        "| state (B/weight) | state total | saved |" + (" compile (s) |" if compiled else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if compiled else ""),
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['method']} | {r['target_set'] or '-'} | {r['step_s_median']:.3f} "
            f"| {_throughput(r)} "
            f"| {_ratio(r['ratio_floor'])} | {_ratio(r['ratio_lora'])} | {_paired(r, 'lora')} "
            f"| {_mib(r['peak_bytes'])} | {_ratio(r.get('peak_ratio_lora'))} "
            f"| {r['trainable_params']:,} | {r['state_bytes_per_weight']:.2f} "
            f"| {_size(r['state_bytes'])} | {_size(r['saved_bytes'])} |"
            + (f" {r['compile_s']:.1f} |" if compiled else "")
        )
    reasons: dict[str, list[str]] = {}  # one line per reason, naming every method it drops
    for name, why in result.get("dropped", {}).items():
        reasons.setdefault(why, []).append(name)
    floor = result["floor"] or "not run"
    lines += [
        "",
        *(f"{', '.join(names)}: {why}." for why, names in reasons.items()),
        f"floor: {floor}. x floor, x LoRA: ratios of the medians; paired: the "
        "median of the per-round ratios (both steps ran in the same round), its 95 % "
        "confidence interval [in brackets] and the rounds' range (in parentheses): a "
        "target inside the interval is not decided by this run. "
        f"peak mem: {result['memory_metric'] or 'not measured'}; peak x LoRA: over LoRA's "
        "peak on the same targets. "
        "state: adapter buffers kept between steps (indices, scales, projections); "
        "B/weight counts the per-layer ones per adapted weight entry."
        + (" compile: the first step, compilation included." if compiled else ""),
    ]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Atomically: a temp file in the same directory, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
