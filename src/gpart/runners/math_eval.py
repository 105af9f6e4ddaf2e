"""GSM8K / MATH / MATH-500 accuracy of a trained run (or a base model) by generation:
``eval_math.py``.

Per dataset, everything comes from its spec (`gpart.configs.tasks.EVAL_TASKS`) unless the
command line overrides it: load the problems (the hub, or ``data_file.<dataset>``;
`gpart.evaluation.eval_sets`), render each in the prompt template, generate greedily with
the adapter merged (`gpart.evaluation.generate`), check every answer by the set's grading
rules and each of ``graders`` (`gpart.evaluation.score_completions`), and write
``<run>/eval/<dataset>/predictions.jsonl`` and ``results.json`` (`gpart.evaluation.store`).
The run's training files are never touched; a finished evaluation is skipped unless
``--force``. Completions are saved in chunks as they are generated, so re-running the same
command after an interruption resumes it. ``--rescore FILE`` re-checks a saved
predictions file without a model. What is evaluated: `gpart.runners.eval_source`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpart.configs import ConfigError, exit_on_config_error
from gpart.configs.eval_cli import EvalConfig, parse_eval_cli
from gpart.configs.tasks import MathEvalTask, eval_task
from gpart.data.loading import DataError
from gpart.evaluation import check_graders, rescore, score_completions
from gpart.evaluation.eval_sets import EvalItem, build_prompts, load_eval_items
from gpart.evaluation.store import (
    RESULTS,
    PartialPredictions,
    dataset_dir,
    items_digest,
    write_outputs,
)
from gpart.results import read_json
from gpart.runners.common import provenance
from gpart.runners.eval_source import Source, load_for_generation, pick_device, resolve_source


@dataclass(frozen=True)
class Plan:
    """One dataset of an evaluation: its spec and what the settings make of it."""

    task: MathEvalTask
    template: str
    system_prompt: str | None
    max_new_tokens: int
    data_file: str | None
    out: Path

    def describe(self) -> dict[str, Any]:
        """What ``--print_config`` shows of it."""
        task = self.task
        return {
            "data": self.data_file or f"{task.source} ({task.split})",
            "question_column": task.question_column,
            "answer_column": task.answer_column,
            "answer_format": task.answer_format,
            "grading": task.grading,
            "prompt_template": self.template,
            "system_prompt": self.system_prompt,
            "max_new_tokens": self.max_new_tokens,
            "output": str(self.out),
        }


def plan(cfg: EvalConfig, source: Source, dataset: str) -> Plan:
    """`dataset` as `cfg` evaluates it: a setting given wins, then the run's, then the
    set's spec."""
    task = eval_task(dataset)
    system = cfg.system_prompt if cfg.system_prompt is not None else source.system_prompt
    return Plan(
        task=task,
        template=cfg.prompt_template or source.template or task.prompt_template,
        system_prompt=system,
        max_new_tokens=cfg.max_new_tokens or task.max_new_tokens,
        data_file=cfg.data_file.get(dataset),
        out=dataset_dir(source.out_root, dataset),
    )


def chunk_size(cfg: EvalConfig) -> int:
    """``save_every`` rounded up to a multiple of ``batch_size``: the chunks then cut no
    batch, so a resumed run generates the very batches of an uninterrupted one."""
    return -(-cfg.save_every // cfg.batch_size) * cfg.batch_size


def graders(cfg: EvalConfig) -> tuple[str, ...]:
    """The ``graders`` setting, checked.

    Raises:
        ConfigError: an unknown grader, or one whose package is missing.
    """
    try:
        return check_graders(cfg.graders)
    except ValueError as exc:
        raise ConfigError(f"graders: {exc}") from None


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


def report(dataset: str, res: dict[str, Any]) -> str:
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


def _generate(cfg: EvalConfig, model: Any, tokenizer: Any, prompts: list[str], **kw: Any):
    from gpart.evaluation.generate import generate_sharded, generate_vllm

    if cfg.backend == "vllm":
        return generate_vllm(model, tokenizer, prompts, **kw)
    kw.pop("dtype")
    return generate_sharded(model, tokenizer, prompts, batch_size=cfg.batch_size,
                            sort=cfg.sort, **kw)  # fmt: skip


# ------------------------------------------------------------------------ commands
def evaluate(cfg: EvalConfig, *, force: bool = False) -> int:
    """Every dataset of `cfg`; 0 when all are done (or were already)."""
    from gpart.evaluation.generate import process_state, require_vllm

    if cfg.backend == "vllm":
        require_vllm()
    chosen = graders(cfg)
    source = resolve_source(cfg.adapter_path, cfg.base_model, cfg.output_dir)
    if cfg.backend == "vllm":
        import torch

        device, dtype = torch.device("cpu"), "bfloat16"  # merged on the CPU, served in bf16
    else:
        device = pick_device(cfg.device)
        dtype = "bfloat16" if device.type == "cuda" else "float32"  # load_for_generation's
    state = process_state()

    todo: list[tuple[str, Plan, list[EvalItem], PartialPredictions]] = []
    for dataset in cfg.datasets:
        p = plan(cfg, source, dataset)
        if (p.out / RESULTS).is_file() and not force:
            done = read_json(p.out / RESULTS)
            print(
                f"{dataset}: already evaluated (accuracy {done.get('accuracy', float('nan')):.4f}"
                f", {p.out / RESULTS}); --force to redo"
            )
            continue
        items = load_eval_items(dataset, p.data_file, cfg.max_samples)
        # What decides the completions: a resumed run must have generated its chunks alike.
        key = {
            "model": source.base_model,
            "adapter": None if source.weights is None else str(source.weights),
            "template": p.template,
            "system_prompt": p.system_prompt,
            "max_new_tokens": p.max_new_tokens,
            "batch_size": cfg.batch_size,
            "backend": cfg.backend,
            "dtype": dtype,
            "processes": state.num_processes,
            "sorted_by_length": cfg.sort,
            "problems": items_digest(items),
            "chunk_size": chunk_size(cfg),
        }
        partial = PartialPredictions(p.out, key)
        if force and state.is_main_process:
            partial.clear()
        todo.append((dataset, p, items, partial))
    state.wait_for_everyone()  # --force has cleared before anyone reads
    for dataset, *_, partial in todo:
        partial.check(dataset)  # every process: all stop alike
    if not todo:
        return 0

    tokenizer, model, dtype = load_for_generation(
        source, device, **({"bf16": True} if cfg.backend == "vllm" else {})
    )
    for dataset, p, items, partial in todo:
        if state.is_main_process:
            partial.start()
        state.wait_for_everyone()
        done = partial.done()
        if done and state.is_main_process:
            print(f"{dataset}: resuming: {len(done)}/{len(items)} problems generated before "
                  f"({partial.root})")  # fmt: skip
        prompts = build_prompts(items, p.template, system_prompt=p.system_prompt,
                                tokenizer=tokenizer)  # fmt: skip
        gen = _generate(cfg, model, tokenizer, prompts, template=p.template,
                        max_new_tokens=p.max_new_tokens, dtype=dtype, desc=dataset,
                        chunk_size=partial.settings["chunk_size"], done=done,
                        on_chunk=partial.save)  # fmt: skip
        if gen is None:  # not the main process: it only generated its shard
            continue
        records, summary = _records(dataset, items, prompts, gen, chosen)
        settings = {
            **{k: v for k, v in partial.settings.items() if k not in ("problems", "chunk_size")},
            "max_samples": cfg.max_samples,
            "device": "vllm" if cfg.backend == "vllm" else str(device),
            "greedy": True,
            "data": str(p.data_file) if p.data_file else "hub",
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
        res = write_outputs(p.out, records, summary, extra)
        partial.clear()
        print(f"{report(dataset, res)}, {res['tokens_per_s']:.1f} tokens/s -> {p.out}")
    return 0


def print_config(cfg: EvalConfig) -> int:
    """The settings and what each dataset will be evaluated with, as one JSON object."""
    source = resolve_source(cfg.adapter_path, cfg.base_model, cfg.output_dir)
    sets = {d: plan(cfg, source, d).describe() for d in cfg.datasets}
    print(json.dumps({"settings": dataclasses.asdict(cfg), "datasets": sets}, indent=2))
    return 0


def rescore_file(cfg: EvalConfig, path: str) -> int:
    """``--rescore FILE``: re-check a saved predictions file by the ``graders``."""
    try:
        summary = rescore(path, graders=graders(cfg))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"--rescore: {exc}") from None
    print(f"{report(summary['dataset'], summary)}, {summary['changed']} changed -> "
          f"{Path(path).with_name('results.rescored.json')}")  # fmt: skip
    return 0


def run(cfg: EvalConfig, flags: argparse.Namespace) -> int:
    """What the flags ask for: ``--rescore``, ``--print_config``, else the evaluation."""
    if flags.rescore:
        return rescore_file(cfg, flags.rescore)
    if flags.print_config:
        return print_config(cfg)
    start = time.time()
    try:
        code = evaluate(cfg, force=flags.force)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    print(f"done in {time.time() - start:.0f} s", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``eval_math.py``: 0 on success, 2 with one ``error:`` line on bad input."""
    with exit_on_config_error():
        return run(*parse_eval_cli(argv))


__all__ = ["Plan", "chunk_size", "evaluate", "graders", "main", "plan", "print_config", "run"]
