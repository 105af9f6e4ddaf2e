"""`python -m gpart.bench.generation`: how fast ``eval_math.py`` generates, and why.

Tokens/s of batch 1 against ``batch_size``, sorted by length and not, and (with a peft
adapter) merged against unmerged, on the first dataset, with ``eval_math.py``'s own
arguments (`gpart.configs.eval_cli`):

    python -m gpart.bench.generation --base_model M --adapter_path A --dataset gsm8k \\
        data_file.gsm8k gsm8k_test.jsonl max_samples 48 batch_size 16 max_new_tokens 64

``max_samples`` problems (default 16), ``max_new_tokens`` each (default 64). Batch 1 runs
on the first ``batch_size`` problems only (its tokens/s does not depend on how many);
every other run on all. One untimed warm-up call comes first. Prints a markdown table
(with how many completions equal batch 1's) and the settings as JSON; writes nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gpart.configs import ConfigError, exit_on_config_error
from gpart.configs.eval_cli import EvalConfig, parse_eval_cli
from gpart.data.loading import DataError
from gpart.evaluation.eval_sets import build_prompts, load_eval_items
from gpart.runners.eval_source import load_for_generation, pick_device, resolve_source
from gpart.runners.math_eval import plan

PROG = "python -m gpart.bench.generation"


def profile(cfg: EvalConfig) -> int:
    """Time the runs the module docstring lists; print the table and the settings."""
    import torch

    from gpart.evaluation.generate import generate_hf

    source = resolve_source(cfg.adapter_path, cfg.base_model, cfg.output_dir or ".")
    dataset = cfg.datasets[0]
    p = plan(cfg, source, dataset)
    items = load_eval_items(dataset, p.data_file, cfg.max_samples or 16)
    device = pick_device(cfg.device)
    tokenizer, model, dtype = load_for_generation(source, device)
    models = {"merged" if source.weights else "base": model}
    if source.weights is not None and (source.weights / "adapter_config.json").is_file():
        models["unmerged"] = load_for_generation(source, device, merge=False)[1]
    prompts = build_prompts(items, p.template, system_prompt=p.system_prompt, tokenizer=tokenizer)
    batch, max_new = cfg.batch_size, cfg.max_new_tokens or 64
    first = min(batch, len(prompts))
    kw = dict(template=p.template, max_new_tokens=max_new, progress=False)
    generate_hf(model, tokenizer, prompts[:1], batch_size=1, **{**kw, "max_new_tokens": 4})
    plan_ = [(next(iter(models)), 1, True, first), (next(iter(models)), batch, True, None),
             (next(iter(models)), batch, False, None)]  # fmt: skip
    if "unmerged" in models:
        plan_.append(("unmerged", batch, True, None))
    reference = None
    print("| weights | batch | sorted | problems | tokens | seconds | tokens/s | "
          "first completions equal to batch 1's |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, size, sort, count in plan_:
        chosen = prompts[:count] if count else prompts
        gen = generate_hf(models[name], tokenizer, chosen, batch_size=size, sort=sort, **kw)
        reference = reference or gen.completions
        same = sum(a == b for a, b in zip(gen.completions[:first], reference, strict=True))
        print(f"| {name} | {size} | {'yes' if sort else 'no'} | {len(chosen)} | "
              f"{sum(gen.tokens)} | {gen.seconds:.1f} | {gen.tokens_per_s:.1f} | "
              f"{same}/{first} |", flush=True)  # fmt: skip
    info = {"model": source.base_model, "adapter": str(source.weights), "dataset": dataset,
            "max_new_tokens": max_new, "template": p.template, "dtype": dtype,
            "device": str(device), "threads": torch.get_num_threads()}  # fmt: skip
    print(json.dumps(info))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """0 on success, 2 with one ``error:`` line on bad input."""
    with exit_on_config_error():
        cfg, flags = parse_eval_cli(argv, prog=PROG)
        given = [f"--{a}" for a in ("force", "rescore", "print_config") if getattr(flags, a)]
        if given:
            raise ConfigError(f"{given[0]}: an eval_math.py action; {PROG} writes nothing")
        try:
            return profile(cfg)
        except DataError as exc:
            raise ConfigError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
