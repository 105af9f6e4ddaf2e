"""GSM8K / MATH / MATH-500 accuracy of a trained run (or a base model) by generation:
``eval_math.py``.

What it does, per dataset: load the problems (the hub, or ``--data_file``), render each
with the run's prompt template, generate greedily with the adapter merged
(`gpart.evaluation.generate`), check every answer (`gpart.evaluation.score_completions`),
and write ``<run>/eval/<dataset>/predictions.jsonl`` (one record per problem, in the
dataset's order) and ``results.json`` beside it, both atomically. The run's training files
are never touched; a finished evaluation is skipped unless ``--force``. Completions are
saved in chunks as they are generated (`PartialPredictions`), so re-running the same
command after an interruption resumes it. Every answer is checked by each ``--grader``. ``--rescore FILE``
re-checks a saved predictions file without a model; ``--profile`` measures generation
speed (batch 1 against a larger batch, sorted and unsorted).

Where the model comes from (`resolve_source`): ``--adapter_path`` is a run directory of
``finetune_metamath.py`` (its ``config.json`` gives the base model, the prompt template and
the system prompt; the weights are its ``adapter/``), the ``adapter/`` folder of one, or any
peft / GPart adapter folder (the base model from its ``adapter_config.json`` unless
``--model_path``); ``--model_path`` alone evaluates a base model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpart.configs import ConfigError, ExperimentConfig, exit_on_config_error, experiment_from_dict
from gpart.configs.errors import first_line
from gpart.data.loading import DataError
from gpart.data.math import TEMPLATE_NAMES, render_prompt
from gpart.evaluation import (
    DATASET_RULES,
    DEFAULT_GRADERS,
    GRADERS,
    check_graders,
    rescore,
    score_completions,
)
from gpart.evaluation.eval_sets import EvalItem, load_eval_items
from gpart.results import read_json, write_json_atomic
from gpart.results.io import write_text_atomic
from gpart.runners.common import ADAPTER_DIR, TRAINABLE_FILE, load_trained, provenance

EVAL_DIR = "eval"
PREDICTIONS, RESULTS = "predictions.jsonl", "results.json"
PARTIAL_DIR, PARTIAL_SETTINGS = "partial", "settings.json"
# Problems per saved chunk: MATH's 5,000 in 20 files; a 7B model generates 256 MATH
# answers in minutes on one GPU, so an interruption costs little.
DEFAULT_SAVE_EVERY = 256
# Room for a full chain of thought: GSM8K solutions are short, MATH's run long.
DEFAULT_MAX_NEW_TOKENS = {"gsm8k": 1024, "math": 2048, "math500": 2048}
BACKENDS = ("hf", "vllm")


@dataclass
class Source:
    """What to evaluate: the base model, the trained weights (None: the base model alone),
    the run's config (None: not a run), and where ``eval/`` goes."""

    base_model: str
    weights: Path | None
    cfg: ExperimentConfig | None
    out_root: Path

    @property
    def template(self) -> str | None:
        return self.cfg.data.prompt_template if self.cfg else None

    @property
    def system_prompt(self) -> str | None:
        return self.cfg.data.system_prompt if self.cfg else None


def _is_weights_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() or (path / TRAINABLE_FILE).is_file()


def resolve_source(
    adapter_path: str | None, model_path: str | None, output_dir: str | None
) -> Source:
    """The model, weights, config and output root that the flags name (module docstring).

    Raises:
        ConfigError: neither flag, a path that is no run or adapter, an unfinished run, a
            base model that cannot be told, or no output directory for a base model.
    """
    out = Path(output_dir) if output_dir else None
    if adapter_path is None:
        if model_path is None:
            raise ConfigError("give --adapter_path RUN_OR_ADAPTER_DIR or --model_path MODEL")
        if out is None:
            raise ConfigError("--model_path alone: give --output_dir (eval/<dataset>/ goes there)")
        return Source(model_path, None, None, out)
    path = Path(adapter_path)
    if not path.is_dir():
        raise ConfigError(f"--adapter_path {adapter_path}: no such directory")
    run = path if (path / "config.json").is_file() else None
    if run is None and _is_weights_dir(path) and (path.parent / "config.json").is_file():
        run = path.parent  # the adapter/ folder of a run
    if run is not None:
        try:
            cfg = experiment_from_dict(read_json(run / "config.json")["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{run / 'config.json'}: not a run's config ({first_line(exc)})"
            ) from None
        if cfg.domain != "math":
            raise ConfigError(f"--adapter_path {adapter_path}: a {cfg.domain} run, not a math one")
        weights = path if run != path else run / ADAPTER_DIR
        if not weights.is_dir():
            raise ConfigError(f"{run}: no {ADAPTER_DIR}/ (the run did not finish)")
        base = model_path or cfg.model.base_model
        if not base:
            raise ConfigError(f"{run}: the config names no base model; give --model_path")
        return Source(base, weights, cfg, out or run)
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(
            f"--adapter_path {adapter_path}: neither a run directory (config.json) nor an "
            "adapter folder (adapter_config.json)"
        )
    base = model_path or json.loads((path / "adapter_config.json").read_text()).get(
        "base_model_name_or_path"
    )
    if not base:
        raise ConfigError(f"{path}/adapter_config.json names no base model; give --model_path")
    return Source(base, path, None, out or path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval_math.py",
        description="GSM8K / MATH / MATH-500 accuracy by greedy generation, of a trained run "
        "(--adapter_path) or a base model (--model_path).",
    )
    p.add_argument(
        "--adapter_path",
        help="a finetune_metamath.py run directory (base model and template from its config), "
        "its adapter/ folder, or any peft / GPart adapter folder",
    )
    p.add_argument(
        "--model_path",
        help="the base model (hub id or directory); overrides the run's, or alone: no adapter",
    )
    p.add_argument(
        "--dataset",
        nargs="+",
        default=["gsm8k", "math"],
        choices=list(DATASET_RULES),
        help="evaluation sets (default: gsm8k math)",
    )
    p.add_argument(
        "--data_file",
        nargs="+",
        help="local files, one per --dataset in the same order (jsonl / json / parquet / csv "
        "with question/answer, problem/solution, problem/answer or instruction/output); "
        "default: the hub",
    )
    p.add_argument("--max_samples", type=int, help="the first N problems only (default: all)")
    p.add_argument("--batch_size", type=int, default=16, help="prompts per generate call (hf)")
    p.add_argument(
        "--max_new_tokens",
        type=int,
        help="tokens per completion (default: 1024 for gsm8k, 2048 for math and math500)",
    )
    p.add_argument(
        "--prompt_template",
        choices=TEMPLATE_NAMES,
        help="default: the run's data.prompt_template, else plain",
    )
    p.add_argument(
        "--system_prompt", help="default: the run's data.system_prompt (none without a run)"
    )
    p.add_argument("--backend", choices=BACKENDS, default="hf", help="hf (default) or vllm")
    p.add_argument(
        "--output_dir",
        help="write <output_dir>/eval/<dataset>/ (default: the run's or adapter's directory)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="redo finished evaluations, and start interrupted ones over",
    )
    p.add_argument(
        "--save_every",
        type=int,
        default=DEFAULT_SAVE_EVERY,
        metavar="N",
        help="save the completions every N problems (rounded up to a multiple of "
        f"--batch_size; default {DEFAULT_SAVE_EVERY}): a re-run of the same command resumes",
    )
    p.add_argument(
        "--device", help="cpu, cuda, cuda:1, ... (default: accelerate's choice for this process)"
    )
    p.add_argument(
        "--rescore",
        metavar="FILE",
        help="re-check a saved predictions.jsonl (no model); writes *.rescored.* beside it",
    )
    p.add_argument(
        "--grader",
        nargs="+",
        default=list(DEFAULT_GRADERS),
        choices=list(GRADERS),
        help="graders recorded side by side, the first the primary (the top-level accuracy): "
        "gpart (ours), official (the paper's rules), math-verify (uv sync --extra "
        "math-verify); default: gpart official",
    )
    p.add_argument(
        "--no_sort",
        action="store_true",
        help="keep the dataset's order instead of sorting prompts by length",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="measure tokens/s of batch 1 against --batch_size (sorted and unsorted; merged "
        "and unmerged adapter) on the first --dataset; prints a table, writes nothing",
    )
    return p


# ------------------------------------------------------------------------ the model
def _device(name: str | None) -> Any:
    import torch

    from gpart.evaluation.generate import process_state

    state = process_state()
    if name is None:
        return state.device
    if state.num_processes > 1:
        raise ConfigError("--device: accelerate launch places each process; leave it out")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r}: {first_line(exc)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device here; use --device cpu")
    return device


def load_for_generation(
    source: Source, device: Any, *, bf16: bool | None = None, merge: bool = True
) -> tuple[Any, Any, str]:
    """The tokenizer (left padding, pad = EOS if it has none) and the model with its
    adapter merged (unless not `merge`: ``--profile`` compares), in eval mode on
    `device`: bf16 on CUDA, fp32 elsewhere (`bf16` decides instead when given).

    Returns:
        ``(tokenizer, model, dtype name)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpart.evaluation.generate import merge_adapter
    from gpart.runners.math import set_pad_token

    if bf16 is None:
        bf16 = device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    quantized = source.cfg is not None and source.cfg.model.quantization != "none"
    if quantized and source.weights is not None:
        # Trained on a quantized base: W0 is its dequantized codes, not the float
        # checkpoint's weights; loaded as in training, dequantized below, then merged.
        from gpart.runners.quantization import quantization_config

        kwargs = {
            "quantization_config": quantization_config(source.cfg, AutoModelForCausalLM, dtype)
        }
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.base_model)
        model = AutoModelForCausalLM.from_pretrained(source.base_model, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot load the base model {source.base_model!r} ({first_line(exc)}); "
            "give --model_path"
        ) from None
    # generate feeds pad ids to the model (left padding, finished rows): one with no
    # embedding row is replaced by EOS
    set_pad_token(tokenizer, model.get_input_embeddings().num_embeddings)
    tokenizer.padding_side = "left"
    model.config.pad_token_id = tokenizer.pad_token_id
    if source.weights is not None:
        if quantized:
            from gpart.runners.quantization import dequantized

            model = dequantized(model)  # fp32: merged in fp32, then cast (as the export)
        model = load_trained(model, source.cfg, source.weights)
        model = (merge_adapter(model) if merge else model).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model.to(device).eval(), str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------------ one dataset
def _records(
    dataset: str, items: list[EvalItem], prompts: list[str], gen: Any, graders: Sequence[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    scores = score_completions(
        dataset,
        zip(gen.completions, [it.ground_truth for it in items], strict=True),
        graders=graders,
        questions=[it.question for it in items],
    )
    records = []
    for i, (item, prompt, completion, tokens, result) in enumerate(
        zip(items, prompts, gen.completions, gen.tokens, scores.results, strict=True)
    ):
        records.append(
            {
                "index": item.index,
                "dataset": dataset,
                "question": item.question,
                "prompt": prompt,
                "completion": completion,
                "prediction": result.prediction,
                "ground_truth": item.ground_truth,
                "correct": result.correct,
                **{k: v for k, v in result.to_dict().items() if k not in ("prediction", "correct")},
                "graders": scores.verdicts(i),
                "generated_tokens": tokens,
            }
        )
    return records, scores.summary


def _report(dataset: str, res: dict[str, Any]) -> str:
    """The line printed for a finished dataset: the primary grader's accuracy, then the
    others' with how often each disagrees with it."""
    primary = res.get("grader", "gpart")
    others = [
        f"{name} {g['accuracy']:.4f} ({res['disagreements'].get(f'{primary}/{name}', 0)} differ)"
        for name, g in res.get("graders", {}).items()
        if name != primary
    ]
    return (
        f"{dataset}: accuracy {res['accuracy']:.4f} by {primary} ({res['correct']}/{res['total']}, "
        f"{res['unextractable']} unextractable, {res['timed_out']} timed out)"
        + (f"; {', '.join(others)}" if others else "")
    )


def write_outputs(
    out: Path, records: list[dict[str, Any]], summary: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """``predictions.jsonl`` then ``results.json`` (the marker of a finished evaluation),
    each written atomically."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_text_atomic(out / PREDICTIONS, lines)
    results = {**summary, **extra}
    write_json_atomic(out / RESULTS, results)
    return results


def _generate(args: argparse.Namespace, model: Any, tokenizer: Any, prompts: list[str], **kw: Any):
    from gpart.evaluation.generate import generate_sharded, generate_vllm

    chunks = {k: kw[k] for k in ("chunk_size", "done", "on_chunk")}
    if args.backend == "vllm":
        return generate_vllm(model, tokenizer, prompts, template=kw["template"],
                             max_new_tokens=kw["max_new_tokens"], dtype=kw["dtype"],
                             desc=kw["desc"], **chunks)  # fmt: skip
    return generate_sharded(
        model,
        tokenizer,
        prompts,
        template=kw["template"],
        max_new_tokens=kw["max_new_tokens"],
        batch_size=args.batch_size,
        sort=not args.no_sort,
        desc=kw["desc"],
        **chunks,
    )


# ------------------------------------------------------------------------ commands
def _graders(args: argparse.Namespace) -> tuple[str, ...]:
    try:
        return check_graders(args.grader)
    except ValueError as exc:
        raise ConfigError(f"--grader: {exc}") from None


def _items_digest(items: list[EvalItem]) -> str:
    """What the problems were: a digest of every (index, question, reference)."""
    text = json.dumps([(it.index, it.question, it.ground_truth) for it in items])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class PartialPredictions:
    """``<out>/partial/``: the completions of an evaluation still under way, so that a
    re-run of the same command resumes it.

    ``settings.json`` holds what decides the completions (model, adapter, prompt,
    decoding, batching, processes, the problems' digest, the chunk size); each chunk of
    generated problems is one ``chunk-<first position>.json`` (its rows, ``[position,
    completion, tokens]``, and its seconds), written atomically by the process that
    generated it, so an interruption loses at most the chunks in flight and never leaves
    a half-written one. A re-run with other settings is refused with one line naming
    what changed (``--force`` starts over); a finished evaluation removes the folder.
    """

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.root = out / PARTIAL_DIR
        self.settings = settings

    def check(self, dataset: str) -> None:
        """Refuse to resume chunks generated with other settings.

        Raises:
            ConfigError: ``settings.json`` differs (the message names every change).
        """
        path = self.root / PARTIAL_SETTINGS
        if not path.is_file():
            return
        before = read_json(path)
        changed = [
            f"{key} {before.get(key)!r} -> {value!r}"
            for key, value in self.settings.items()
            if before.get(key) != value
        ]
        if changed:
            raise ConfigError(
                f"{dataset}: {self.root} holds an interrupted evaluation with other settings "
                f"({'; '.join(changed)}); re-run it as it was to resume, or --force to start over"
            )

    def start(self) -> None:
        """Record the settings (the main process, before any chunk)."""
        if not (self.root / PARTIAL_SETTINGS).is_file():
            write_json_atomic(self.root / PARTIAL_SETTINGS, self.settings)

    def done(self) -> dict[int, tuple[str, int, float]]:
        """Every position generated so far: (completion, tokens, its share of its chunk's
        seconds)."""
        found: dict[int, tuple[str, int, float]] = {}
        for path in sorted(self.root.glob("chunk-*.json")) if self.root.is_dir() else []:
            chunk = read_json(path)
            share = chunk["seconds"] / max(len(chunk["rows"]), 1)
            for position, completion, tokens in chunk["rows"]:
                found[int(position)] = (completion, int(tokens), share)
        return found

    def save(self, rows: list[tuple[int, str, int]], seconds: float) -> None:
        """One chunk, atomically (called by the process that generated it)."""
        name = f"chunk-{min(r[0] for r in rows):07d}.json"
        write_json_atomic(self.root / name, {"rows": [list(r) for r in rows], "seconds": seconds})

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _chunk_size(args: argparse.Namespace) -> int:
    """``--save_every`` rounded up to a multiple of ``--batch_size``: the chunks then cut
    no batch, so a resumed run generates the very batches of an uninterrupted one."""
    return -(-args.save_every // args.batch_size) * args.batch_size


def evaluate(args: argparse.Namespace) -> int:
    """Every dataset of the command line; 0 when all are done (or were already)."""
    from gpart.evaluation.generate import process_state, require_vllm

    datasets = list(dict.fromkeys(args.dataset))
    files = args.data_file or []
    if files and len(files) != len(datasets):
        raise ConfigError(
            f"--data_file: {len(files)} file(s) for {len(datasets)} dataset(s) "
            f"({' '.join(datasets)}); give one per --dataset, in the same order"
        )
    if min(args.batch_size, args.save_every, args.max_new_tokens or 1) < 1:
        raise ConfigError("--batch_size, --save_every and --max_new_tokens must be 1 or more")
    if args.backend == "vllm":
        require_vllm()
    graders = _graders(args)
    source = resolve_source(args.adapter_path, args.model_path, args.output_dir)
    template = args.prompt_template or source.template or "plain"
    system = args.system_prompt if args.system_prompt is not None else source.system_prompt
    if args.backend == "vllm":
        import torch

        device, dtype = torch.device("cpu"), "bfloat16"  # merged on the CPU, served in bf16
    else:
        device = _device(args.device)
        dtype = "bfloat16" if device.type == "cuda" else "float32"  # load_for_generation's
    state = process_state()

    todo: list[tuple[str, str | None, Path, list[EvalItem], PartialPredictions]] = []
    for i, dataset in enumerate(datasets):
        out = source.out_root / EVAL_DIR / dataset
        if (out / RESULTS).is_file() and not args.force:
            done = read_json(out / RESULTS)
            print(
                f"{dataset}: already evaluated (accuracy {done.get('accuracy', float('nan')):.4f}"
                f", {out / RESULTS}); --force to redo"
            )
            continue
        data_file = files[i] if files else None
        items = load_eval_items(dataset, data_file, args.max_samples)
        max_new = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[dataset]
        key = {
            "model": source.base_model,
            "adapter": None if source.weights is None else str(source.weights),
            "template": template,
            "system_prompt": system,
            "max_new_tokens": max_new,
            "batch_size": args.batch_size,
            "backend": args.backend,
            "dtype": dtype,
            "processes": state.num_processes,
            "sorted_by_length": not args.no_sort,
            "problems": _items_digest(items),
            "chunk_size": _chunk_size(args),
        }
        partial = PartialPredictions(out, key)
        if args.force and state.is_main_process:
            partial.clear()
        todo.append((dataset, data_file, out, items, partial))
    state.wait_for_everyone()  # --force has cleared before anyone reads
    for dataset, *_, partial in todo:
        partial.check(dataset)  # every process: all stop alike
    if not todo:
        return 0

    if args.backend == "vllm":
        tokenizer, model, dtype = load_for_generation(source, device, bf16=True)
    else:
        tokenizer, model, dtype = load_for_generation(source, device)
    for dataset, data_file, out, items, partial in todo:
        if state.is_main_process:
            partial.start()
        state.wait_for_everyone()
        done = partial.done()
        if done and state.is_main_process:
            print(f"{dataset}: resuming: {len(done)}/{len(items)} problems generated before "
                  f"({partial.root})")  # fmt: skip
        prompts = [
            render_prompt(template, it.question, system_prompt=system, tokenizer=tokenizer)
            for it in items
        ]
        max_new = partial.settings["max_new_tokens"]
        gen = _generate(args, model, tokenizer, prompts, template=template,
                        max_new_tokens=max_new, dtype=dtype, desc=dataset,
                        chunk_size=partial.settings["chunk_size"], done=done,
                        on_chunk=partial.save)  # fmt: skip
        if gen is None:  # not the main process: it only generated its shard
            continue
        records, summary = _records(dataset, items, prompts, gen, graders)
        settings = {
            **{k: v for k, v in partial.settings.items() if k not in ("problems", "chunk_size")},
            "max_samples": args.max_samples,
            "device": "vllm" if args.backend == "vllm" else str(device),
            "greedy": True,
            "data": str(data_file) if data_file else "hub",
            "save_every": partial.settings["chunk_size"],
        }
        extra = {
            "settings": settings,
            "seconds": gen.seconds,
            "generated_tokens": sum(gen.tokens),
            "tokens_per_s": gen.tokens_per_s,
            "resumed": len(done),
            "provenance": provenance(),
        }
        res = write_outputs(out, records, summary, extra)
        partial.clear()
        print(f"{_report(dataset, res)}, {res['tokens_per_s']:.1f} tokens/s -> {out}")
    return 0


def profile(args: argparse.Namespace) -> int:
    """How fast generation is, and why: tokens/s of batch 1 against ``--batch_size``,
    sorted by length and not, and (with a peft adapter) merged against unmerged, on the
    first ``--dataset`` (``--max_samples`` problems, default 16; ``--max_new_tokens`` each,
    default 64). Batch 1 runs on the first ``--batch_size`` problems only (its tokens/s
    does not depend on how many); every other run on all. One untimed warm-up call comes
    first. Prints a markdown table (with how many completions equal batch 1's) and the
    settings as JSON; writes nothing."""
    from gpart.evaluation.generate import generate_hf

    source = resolve_source(args.adapter_path, args.model_path, args.output_dir or ".")
    template = args.prompt_template or source.template or "plain"
    system = args.system_prompt if args.system_prompt is not None else source.system_prompt
    dataset = args.dataset[0]
    items = load_eval_items(
        dataset, args.data_file[0] if args.data_file else None, args.max_samples or 16
    )
    device = _device(args.device)
    tokenizer, model, dtype = load_for_generation(source, device)
    models = {"merged" if source.weights else "base": model}
    if source.weights is not None and (source.weights / "adapter_config.json").is_file():
        models["unmerged"] = load_for_generation(source, device, merge=False)[1]
    prompts = [render_prompt(template, it.question, system_prompt=system, tokenizer=tokenizer)
               for it in items]  # fmt: skip
    batch, max_new = args.batch_size, args.max_new_tokens or 64
    first = min(batch, len(prompts))
    kw = dict(template=template, max_new_tokens=max_new, progress=False)
    generate_hf(model, tokenizer, prompts[:1], batch_size=1, **{**kw, "max_new_tokens": 4})
    plan = [(next(iter(models)), 1, True, first), (next(iter(models)), batch, True, None),
            (next(iter(models)), batch, False, None)]  # fmt: skip
    if "unmerged" in models:
        plan.append(("unmerged", batch, True, None))
    reference = None
    print("| weights | batch | sorted | problems | tokens | seconds | tokens/s | "
          "first completions equal to batch 1's |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, size, sort, count in plan:
        chosen = prompts[:count] if count else prompts
        gen = generate_hf(models[name], tokenizer, chosen, batch_size=size, sort=sort, **kw)
        reference = reference or gen.completions
        same = sum(a == b for a, b in zip(gen.completions[:first], reference, strict=True))
        print(f"| {name} | {size} | {'yes' if sort else 'no'} | {len(chosen)} | "
              f"{sum(gen.tokens)} | {gen.seconds:.1f} | {gen.tokens_per_s:.1f} | "
              f"{same}/{first} |", flush=True)  # fmt: skip
    info = {"model": source.base_model, "adapter": str(source.weights), "dataset": dataset,
            "max_new_tokens": max_new, "template": template, "dtype": dtype,
            "device": str(device), "threads": _threads()}  # fmt: skip
    print(json.dumps(info))
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: Sequence[str] | None = None) -> int:
    """``eval_math.py``: 0 on success, 2 with one ``error:`` line on bad input."""
    with exit_on_config_error():
        args = build_parser().parse_args(argv)
        if args.rescore:
            graders = _graders(args)
            try:
                summary = rescore(args.rescore, graders=graders)
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"--rescore: {exc}") from None
            print(
                f"{_report(summary['dataset'], summary)}, {summary['changed']} changed -> "
                f"{Path(args.rescore).with_name('results.rescored.json')}"
            )
            return 0
        start = time.time()
        try:
            code = profile(args) if args.profile else evaluate(args)
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        print(f"done in {time.time() - start:.0f} s", file=sys.stderr)
        return code


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "Source",
    "build_parser",
    "evaluate",
    "load_for_generation",
    "main",
    "profile",
    "resolve_source",
    "write_outputs",
]
