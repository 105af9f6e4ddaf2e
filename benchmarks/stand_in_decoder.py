"""Write a randomly initialised decoder of a real model's shape, a tokenizer and
MetaMathQA-shaped data, so that the math runner and `eval_math.py` can be timed end to end
on a machine that cannot reach the Hugging Face hub (the GPU check, `gpu_check.sh`).

Throughput and memory of a training step depend on the model's shape, the sequence lengths
and the batch, not on the weights' values, so a stand-in gives the preset's real tokens/s
and peak memory; its losses and accuracies mean nothing and are never reported.

    python benchmarks/stand_in_decoder.py --model_config qwen2-0.5b --out /tmp/standin

writes ``/tmp/standin/model`` (config + bf16 safetensors + tokenizer), ``train.jsonl``
(``query``/``response``) and ``gsm8k.jsonl`` (``question``/``answer`` with ``#### N``).

The tokenizer is the tests' tiny byte-level BPE (``tests/math_env.py``): about one token per
character of this data, so the chain-of-thought responses below (3 to 12 steps) give
sequences of roughly 150 to 600 tokens (about 350 on average), near MetaMathQA with a real tokenizer.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _example(rng: random.Random) -> tuple[str, str, int]:
    """A multi-step arithmetic word problem, its worked answer, and the final number."""
    value = rng.randint(10, 99)
    steps = [f"We start with {value} apples."]
    for _ in range(rng.randint(3, 12)):
        op, n = rng.choice("+-*"), rng.randint(2, 9)
        new = value + n if op == "+" else value - n if op == "-" else value * n % 1000
        steps.append(f"Then {value} {op} {n} gives {new} apples.")
        value = new
    query = f"Sam has some apples and follows {len(steps) - 1} rules. How many are left?"
    return query, " ".join(steps) + f" The answer is: {value}", value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_config", default="qwen2-0.5b", help="a gpart.bench preset")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=4000, help="training rows")
    parser.add_argument("--eval_rows", type=int, default=256, help="GSM8K-shaped rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpart.bench.models import load_config

    sys.path.insert(0, str(ROOT / "tests"))
    from math_env import tiny_tokenizer  # the tests' tokenizer: one definition

    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "train.jsonl", "w") as f:
        for _ in range(args.rows):
            q, r, _ = _example(rng)
            f.write(json.dumps({"query": q, "response": r}) + "\n")
    with open(args.out / "gsm8k.jsonl", "w") as f:
        for _ in range(args.eval_rows):
            q, r, v = _example(rng)
            f.write(json.dumps({"question": q, "answer": f"{r}\n#### {v}"}) + "\n")

    config = load_config(args.model_config)
    # Saved beside the config first: AutoTokenizer picks the tokenizer class by the model
    # type (Qwen2's adds its own pad token), so its length is the one the runner will see.
    config.save_pretrained(args.out / "model")
    tiny_tokenizer(bos=False, chat=True).save_pretrained(args.out / "model")
    tok = AutoTokenizer.from_pretrained(args.out / "model")
    # The tokenizer's ids must be valid ids of the model; the embedding keeps the preset's
    # vocabulary size, so the embedding and LM-head cost is the real model's.
    config.vocab_size = max(config.vocab_size, len(tok))  # tiny presets: fit the tokenizer
    config.eos_token_id = tok.eos_token_id
    config.bos_token_id = tok.bos_token_id
    config.pad_token_id = None
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(args.out / "model")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.model_config} ({n / 1e6:.0f}M parameters), {args.rows} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
