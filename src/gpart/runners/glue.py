"""The RoBERTa-GLUE runner: every (task, seed) of a resolved experiment, one run each.

A run lives in ``<output_dir>/<run-name>/<task>/seed_<seed>/``:

    config.json        the resolved single-task config + library versions + git sha
    metrics.jsonl      every evaluation (selection split each epoch, then the test split)
    checkpoint-*/      Trainer checkpoints: the last model's (--resume, eval --which last) and,
                       with best-model selection, the best one's
    adapter/           what was trained, for the selected model (best or last)
    results.json       written last, atomically: a crashed run has none

Training is transformers' `Trainer` (`GroupedTrainer`: adapter at `lr`, head at
`head_lr`), so mixed precision, accumulation, clipping, checkpoints, resume, TensorBoard
and DDP through ``accelerate launch`` are the stock ones.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from gpart.configs import (
    ConfigError,
    ExperimentConfig,
    apply_adapter,
    build_parser,
    cli_main,
    head_module_names,
)
from gpart.configs.cli import configs_for_seeds
from gpart.data.glue import (
    get_glue_task,
    glue_data_collator,
    load_glue_splits,
    tokenize_glue_splits,
)
from gpart.data.loading import DataError
from gpart.params import parameter_breakdown
from gpart.results import build_results, read_json, run_dir, write_json_atomic
from gpart.runners.common import (
    ADAPTER_DIR,
    MetricsJsonlCallback,
    load_base_model,
    provenance,
    save_trained,
    sweep_run_name,
)
from gpart.training.metrics import (
    make_compute_metrics,
    merge_split_metrics,
    primary_metric,
    strip_metric_prefix,
)
from gpart.training.trainer import GroupedTrainer

RESULTS = "results.json"


def build_glue_parser() -> argparse.ArgumentParser:
    parser = build_parser(
        "glue",
        prog="finetune_roberta_glue.py",
        description="Fine-tune RoBERTa (or any encoder) on GLUE with GPart or a baseline.",
        require_adapter=True,
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted runs from their last checkpoint"
    )
    parser.add_argument(
        "--force", action="store_true", help="re-run finished runs (their directory is replaced)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli_main(train_glue, argv, domain="glue", parser=build_glue_parser())


def train_glue(cfg: ExperimentConfig, flags: argparse.Namespace) -> int:
    """Run every (seed, task); keep going past a failing task; non-zero exit if any failed."""
    if cfg.data.data_dir is not None:
        root = Path(cfg.data.data_dir)
        if not root.is_dir():
            raise ConfigError(f"--data_dir: {cfg.data.data_dir!r} is not a directory")
        missing = [t for t in cfg.tasks if not (root / get_glue_task(t).name).is_dir()]
        if missing:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise ConfigError(
                f"--data_dir: no folder for {', '.join(missing)} in {str(root)!r} (it holds: "
                f"{', '.join(present) or 'nothing'}); expected <data_dir>/<task>/"
            )
    for task in cfg.tasks:
        if cfg.effective_training(task).precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError("training.precision fp16: needs a CUDA device; use fp32 or bf16")
    failed: list[str] = []
    done: list[Path] = []
    for seed_cfg in configs_for_seeds(flags):
        for task in seed_cfg.tasks:
            label = f"{task} (seed {seed_cfg.seed})"
            try:
                out = run_glue_task(seed_cfg, task, resume=flags.resume, force=flags.force)
                done.append(out)
            except (ConfigError, DataError, RunStateError) as exc:
                print(f"error: {label}: {' '.join(str(exc).split())}", file=sys.stderr)
                failed.append(label)
            except Exception:  # noqa: BLE001 -- one task's crash must not stop the sweep
                traceback.print_exc()
                print(f"error: {label} failed (traceback above)", file=sys.stderr)
                failed.append(label)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


class RunStateError(RuntimeError):
    """A run directory is in a state the flags do not allow to touch."""


def run_glue_task(
    cfg: ExperimentConfig, task: str, *, resume: bool = False, force: bool = False
) -> Path:
    """Train and evaluate one task for `cfg.seed`; return the run directory.

    Under ``accelerate launch`` / torchrun every process runs this: all of them decide from
    the same files (nobody writes before the first barrier), all of them train and
    evaluate (Trainer shards the work), and only the main process writes files or prints.
    """
    from accelerate import PartialState

    dist = PartialState()
    single = cfg.for_task(task)
    tc = single.training
    out = run_dir(cfg.output_dir, sweep_run_name(cfg), task, cfg.seed)
    results_path = out / RESULTS
    if results_path.exists() and not force:
        if dist.is_main_process:
            print(
                f"{task} (seed {cfg.seed}): already finished: {results_path} (--force re-runs it)"
            )
        return out
    if out.exists() and not (resume or force):
        raise RunStateError(
            f"{out} holds an unfinished run: pass --resume to continue it or --force to start over"
        )
    checkpoint = _last_checkpoint(out) if resume else None

    # Everything that can fail on user input happens before the run directory exists.
    spec = get_glue_task(task)
    splits = load_glue_splits(
        spec,
        cfg.data.data_dir,
        model_selection=tc.model_selection,
        seed=cfg.seed,
        max_train_samples=cfg.data.max_train_samples,
    )
    tokenizer, base = load_glue_model(cfg, task)
    heads = head_module_names(base, "SEQ_CLS")
    model = apply_adapter(base, single, head_names=heads)
    params = parameter_breakdown(model, heads)
    tokenized = tokenize_glue_splits(splits, tokenizer, tc.max_seq_length)
    if cfg.data.max_eval_samples is not None:
        tokenized.test = {
            k: v.select(range(min(cfg.data.max_eval_samples, len(v))))
            for k, v in tokenized.test.items()
        }
    trainer = _build_trainer(single, task, model, tokenizer, tokenized, heads, out)

    dist.wait_for_everyone()  # every process has read the run directory's state
    if dist.is_main_process:
        if force and out.exists() and not resume:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            out / "config.json",
            {
                "config": single.to_dict(),
                "run_name": out.parent.parent.name,
                "provenance": provenance(),
            },
        )
    dist.wait_for_everyone()

    start = time.time()
    if resume and checkpoint is None and dist.is_main_process:
        print(f"{task} (seed {cfg.seed}): no checkpoint in {out}; starting from scratch")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if dist.is_main_process:
        save_trained(trainer.model, out / ADAPTER_DIR)

    test = _evaluate_test(trainer, task, tokenized.test)  # every process: it is sharded
    state = trainer.state
    selection: dict[str, Any] = dict(splits.info)
    if tc.model_selection == "best":
        selection.update(
            metric=primary_metric(task),
            best_value=state.best_metric,
            best_step=_step_of(state.best_model_checkpoint),
            best_checkpoint=_rel(state.best_model_checkpoint, out),
        )
    selection["last_step"] = state.global_step
    selection["last_checkpoint"] = _rel(_last_checkpoint(out), out)
    if dist.is_main_process:
        record = build_results(
            run_name=out.parent.parent.name,
            adapter_type=cfg.adapter.type,
            task=task,
            seed=cfg.seed,
            primary_metric=primary_metric(task),
            test=test,
            selection=selection,
            params={k: v for k, v in params.items() if isinstance(v, int)},
            wall_time_s=time.time() - start,
            base_model=cfg.model.base_model,
            epochs_trained=state.epoch,
            resumed_from=_rel(checkpoint, out),
            # processes that trained together: the effective batch is batch_size x this
            world_size=dist.num_processes,
        )
        write_json_atomic(results_path, record)
        value = test[primary_metric(task)]
        print(f"{task} (seed {cfg.seed}): {primary_metric(task)} = {value:.4f} -> {out}")
    dist.wait_for_everyone()  # no process starts the next run before the files exist
    return out


def load_glue_model(cfg: ExperimentConfig, task: str):
    """The tokenizer and the pretrained encoder with a new head sized for `task`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = get_glue_task(task)
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.model.base_model)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"--base_model: cannot load a tokenizer from {cfg.model.base_model!r} ({first})"
        ) from None
    base = load_base_model(
        cfg,
        task,
        AutoModelForSequenceClassification,
        num_labels=spec.num_labels,
        # the head is new for every task (a checkpoint's own head may have another size)
        ignore_mismatched_sizes=True,
        problem_type="regression" if spec.is_regression else "single_label_classification",
    )
    return tokenizer, base


def _build_trainer(cfg, task, model, tokenizer, data, heads, out: Path) -> GroupedTrainer:
    from transformers import EarlyStoppingCallback, TrainingArguments

    tc = cfg.training
    best = tc.model_selection == "best"
    every = "steps" if tc.eval_every else "epoch"
    keep = tc.save_total_limit
    if best and keep is not None and keep < 2:
        # With one checkpoint kept, Trainer deletes the last one at the end when the best is
        # older: keep both, so the last model stays available (eval --which last, resume).
        keep = 2
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.eval_batch_size or tc.batch_size,
        num_train_epochs=tc.epochs,
        max_steps=tc.max_steps if tc.max_steps is not None else -1,
        learning_rate=tc.lr,
        weight_decay=tc.weight_decay,
        lr_scheduler_type=tc.scheduler,
        gradient_accumulation_steps=tc.grad_accum,
        max_grad_norm=tc.max_grad_norm if tc.max_grad_norm is not None else 0.0,
        use_cpu=not torch.cuda.is_available(),  # else bf16 on a CPU machine is refused
        bf16=tc.precision == "bf16",
        fp16=tc.precision == "fp16",
        eval_strategy=every if best else "no",
        eval_steps=tc.eval_every,
        save_strategy=every,
        save_steps=tc.eval_every,
        save_total_limit=keep,
        load_best_model_at_end=best,
        metric_for_best_model=primary_metric(task) if best else None,
        greater_is_better=True,
        logging_steps=tc.logging_steps,
        report_to=["tensorboard"],
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=tc.num_workers,
        label_smoothing_factor=tc.label_smoothing,
        activation_checkpointing=tc.gradient_checkpointing,  # transformers 5's name
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )
    callbacks = [MetricsJsonlCallback(out / "metrics.jsonl")]
    if tc.early_stopping_patience is not None:
        if not best:
            raise ConfigError(
                "training.early_stopping_patience: needs training.model_selection best"
            )
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    return GroupedTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.selection if best else None,
        data_collator=glue_data_collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(task),
        callbacks=callbacks,
        head_lr=tc.head_lr,
        head_weight_decay=tc.head_weight_decay,
        decay_theta=tc.decay_theta,
        warmup_ratio=tc.warmup_ratio,
        head_modules=heads,
    )


def _evaluate_test(trainer, task: str, test_sets: dict) -> dict[str, float]:
    spec = get_glue_task(task)
    per_split = {}
    for split, ds in test_sets.items():
        metrics = trainer.evaluate(eval_dataset=ds, metric_key_prefix="test")
        per_split[split] = strip_metric_prefix(metrics, "test")
    return merge_split_metrics(task, per_split, dict(spec.test_splits))


def _last_checkpoint(out: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not out.is_dir():
        return None
    last = get_last_checkpoint(str(out))
    return Path(last) if last else None


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _rel(path: str | Path | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_results(out: Path) -> dict[str, Any]:
    return read_json(out / RESULTS)


__all__ = ["build_glue_parser", "load_glue_model", "main", "run_glue_task", "train_glue"]
