"""The isometry figure: how far apart two trainable vectors put the weight updates.

For random pairs of trainable vectors ``(a, b)`` of one method on one model and target set,
the ratio ``||dW(a) - dW(b)|| / ||a - b||`` (Frobenius norm over every adapted weight) is
what the paper's argument rests on: GPart's map from theta to the updates is an isometry,
so its ratio is exactly 1 for every pair; the non-isometric control moves it off 1; the
dense Fastfood projection is isometric only in expectation, so its ratio scatters around 1;
LoRA's and
Uni-LoRA's updates are products of trained factors, so distances in their trainable space
say little about distances between the updates they make.

    uv run python -m gpart.bench.isometry --model_config roberta-tiny --pairs 200 \
        --out figs/isometry

Writes ``<out>.png``, ``<out>.pdf`` and ``<out>.json`` (every ratio, per method). Models are
built from configs (`gpart.bench.models`), never downloaded; each layer's update comes from
its tuner layer's ``get_delta_weight``, the same the merge uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, UniLoraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer

from gpart.bench.errors import BenchError
from gpart.bench.models import ModelSpec, load_config, resolve_task, target_modules
from gpart.tuner import GPartConfig

# method label -> peft config for (targets, d, seed); d sizes the vector-based methods.
METHODS: dict[str, Callable[[list[str], int, int], PeftConfig]] = {
    "GPart": lambda t, d, s: GPartConfig(d=d, target_modules=t, proj_seed=s),
    "GPart (non-isometric)": lambda t, d, s: GPartConfig(
        d=d, target_modules=t, proj_seed=s, isometric=False
    ),
    # The dense structured random baseline: isometric only in expectation (E[P^T P] = I).
    "Fastfood": lambda t, d, s: GPartConfig(
        d=d, target_modules=t, proj_seed=s, projection_type="fastfood"
    ),
    "Uni-LoRA": lambda t, d, s: UniLoraConfig(r=4, theta_d_length=d, target_modules=t, proj_seed=s),
    "LoRA": lambda t, d, s: LoraConfig(r=4, lora_alpha=4, target_modules=t),
}


def delta_weights(model: torch.nn.Module) -> torch.Tensor:
    """Every adapted layer's update (as merging would add it), flattened and concatenated."""
    parts = []
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for name in module.active_adapters:
                parts.append(module.get_delta_weight(name).detach().float().reshape(-1))
    if not parts:
        raise BenchError("no adapted layer found")
    return torch.cat(parts)


def isometry_ratios(model: torch.nn.Module, pairs: int, seed: int = 0) -> list[float]:
    """``||dW(a) - dW(b)|| / ||a - b||`` for `pairs` random pairs of trainable vectors.

    The trainable vector is every parameter with ``requires_grad`` (the adapter; no head is
    attached in these models), drawn i.i.d. normal with a scale typical of trained adapters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BenchError("nothing trainable")
    g = torch.Generator().manual_seed(seed)
    n = sum(p.numel() for p in params)
    out = []
    with torch.no_grad():
        for _ in range(pairs):
            a, b = (torch.randn(n, generator=g) * 0.02 for _ in range(2))
            torch.nn.utils.vector_to_parameters(a, params)
            da = delta_weights(model)
            torch.nn.utils.vector_to_parameters(b, params)
            db = delta_weights(model)
            out.append(float((da - db).norm() / (a - b).norm()))
    return out


def run(model_config: str, target_set: str, d: int, pairs: int, seed: int) -> dict[str, Any]:
    config = load_config(model_config)
    spec = ModelSpec(config, resolve_task(config, "auto"))
    result: dict[str, Any] = {"model_config": model_config, "targets": target_set, "d": d}
    ratios = {}
    for label, make in METHODS.items():
        base = spec.build(torch.device("cpu"), torch.float32, seed=seed)
        targets = target_modules(base, spec, target_set)
        model = get_peft_model(base, make(targets, d, seed))
        ratios[label] = isometry_ratios(model, pairs, seed)
    result["ratios"] = ratios
    return result


def plot(result: dict[str, Any], out: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(result["ratios"])
    every = np.concatenate([result["ratios"][label] for label in labels])
    # One log-scaled axis for all: the methods differ by orders of magnitude, and GPart's
    # ratios (1 up to float rounding) fall in one bin instead of a zoomed-in noise plot.
    lo, hi = min(every.min(), 1.0) / 1.5, max(every.max(), 1.0) * 1.5
    bins = np.geomspace(lo, hi, 40)
    fig, axes = plt.subplots(
        1, len(labels), figsize=(3 * len(labels), 2.8), squeeze=False, sharex=True
    )
    for ax, label in zip(axes[0], labels, strict=True):
        ax.hist(result["ratios"][label], bins=bins)
        ax.axvline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel("||dW(a) - dW(b)|| / ||a - b||")
    axes[0][0].set_ylabel("pairs")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    try:
        for path in paths:
            fig.savefig(path, bbox_inches="tight", dpi=150)
    finally:
        plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpart.bench.isometry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model_config", default="roberta-tiny", help="a bench preset or config")
    p.add_argument("--targets", choices=("qv", "all-linear"), default="qv")
    p.add_argument("--d", type=int, default=256, help="trainable size of GPart / Uni-LoRA")
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output path without suffix")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.d < 1:
        print("isometry: error: --pairs and --d must be positive", file=sys.stderr)
        return 2
    try:
        result = run(args.model_config, args.targets, args.d, args.pairs, args.seed)
    except (BenchError, ValueError) as err:
        print(f"isometry: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    written = plot(result, args.out)
    json_path = Path(args.out).with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    for label, values in result["ratios"].items():
        lo, hi = min(values), max(values)
        print(f"{label:>24}: ratio in [{lo:.4f}, {hi:.4f}] over {len(values)} pairs")
    print("wrote " + ", ".join(str(x) for x in [*written, json_path]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
