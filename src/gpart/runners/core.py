"""The run life cycle every runner shares; a domain (GLUE, vision, math) plugs in its data,
model, collator and metrics through a `Domain` object.

`run_sweep` runs every (seed, task) of a resolved experiment, one run each, and keeps going
past a failing task. `run_task` is one run; it lives in
``<output_dir>/<run-name>/<task>/seed_<seed>/``:

    config.json        the resolved single-task config, the data's fingerprint
                       (`gpart.data.fingerprint`), library versions and the git sha
    metrics.jsonl      every evaluation (selection split each epoch, then the test split)
    checkpoint-*/      Trainer checkpoints: the last model's (--resume, eval --which last) and,
                       with best-model selection, the best one's
    adapter/           what was trained, for the selected model (best or last)
    results.json       written last, atomically: a crashed run has none

The run directory is a small state machine: with ``results.json`` the run is finished and
is skipped (``--force`` re-runs it); without it, an existing directory is an unfinished run
that is only touched with ``--resume`` (continue from the last checkpoint) or ``--force``
(start over). Either way, a directory whose run recorded other data than the data given
now is refused until ``--force`` (the run name leaves the data's location out on purpose,
so the name alone cannot tell). Everything that can fail on user input (data, model, adapter) happens before
the directory is created, so a mistake leaves nothing half-written.

Training is transformers' `Trainer` (`GroupedTrainer`: adapter at `lr`, head at
`head_lr`), so mixed precision, accumulation, clipping, checkpoints, resume, the experiment
trackers of ``training.report_to`` (`gpart.runners.tracking`) and DDP through ``accelerate launch`` are the stock ones. Under DDP every process runs the
same code; only the main one writes files or prints (anchor: accelerate's
``PartialState.is_main_process`` / ``wait_for_everyone`` idiom in transformers' examples).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import TrainerCallback, set_seed

from gpart.configs import ConfigError, ExperimentConfig, apply_adapter, get_domain, get_task
from gpart.configs.cli import configs_for_seeds
from gpart.data.fingerprint import (
    describe_change,
    fingerprint_digest,
    hub_fingerprint,
    local_fingerprint,
    same_data,
)
from gpart.data.loading import DataError, Splits
from gpart.heads import head_module_names
from gpart.metrics import strip_metric_prefix
from gpart.params import parameter_breakdown
from gpart.results import RESULTS_FILENAME, build_results, read_json, write_json_atomic
from gpart.runners.common import (
    ADAPTER_DIR,
    MetricsJsonlCallback,
    fsdp_device_available,
    fsdp_launched,
    mixed_precision,
    provenance,
    save_trained_from,
)
from gpart.runners.export import check_export_targets, export_merged, export_targets
from gpart.runners.identity import find_run_dir
from gpart.runners.tracking import (
    RunParamsCallback,
    check_report_to,
    run_parameters,
    tracker_run_name,
    trackers_open_until_done,
)
from gpart.training.trainer import GroupedTrainer

if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn


class RunStateError(RuntimeError):
    """A run directory is in a state the flags do not allow to touch."""


class DataChangedError(ConfigError):
    """A run directory holds a run on other data than the data given now."""


class Domain:
    """What a domain supplies to the shared life cycle. Subclass it and override the hooks.

    `name` is the configs domain (its tasks and presets, `gpart.configs.tasks.DOMAINS`).
    The hooks a domain must provide raise `NotImplementedError` here; the others have
    defaults that fit a task whose data lives in ``<data_dir>/<task>/``.
    """

    name: str = ""

    # ---- inputs ---------------------------------------------------------------------
    def check_inputs(self, cfg: ExperimentConfig) -> None:
        """Fail before anything runs when the inputs of any task of `cfg` are missing.

        Default: with ``--data_dir``, every task needs its folder ``<data_dir>/<task>/``.
        """
        if cfg.data.data_dir is None:
            return
        root = Path(cfg.data.data_dir)
        if not root.is_dir():
            raise ConfigError(f"--data_dir: {cfg.data.data_dir!r} is not a directory")
        missing = [t for t in cfg.tasks if not (root / t).is_dir()]
        if missing:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise ConfigError(
                f"--data_dir: no folder for {', '.join(missing)} in {str(root)!r} (it holds: "
                f"{', '.join(present) or 'nothing'}); expected <data_dir>/<task>/"
            )

    def data_fingerprint(self, cfg: ExperimentConfig, task: str) -> dict[str, Any]:
        """What identifies the task's data (`gpart.data.fingerprint`), recorded with each run.

        Default: the files of ``<data_dir>/<task>/``, or the task spec's hub id and subset.
        Domains that load from the hub add the loaded splits' fingerprints.
        """
        if cfg.data.data_dir is not None:
            return local_fingerprint(Path(cfg.data.data_dir) / task)
        spec = get_task(self.name, task)
        return hub_fingerprint(spec.source, spec.subset)

    def load_splits(self, cfg: ExperimentConfig, task: str) -> Splits:
        """The task's raw data in its train / selection / test roles, for `cfg.seed`."""
        raise NotImplementedError

    def load_eval_sets(
        self, cfg: ExperimentConfig, task: str, data_dir: str | None, split: str | None
    ) -> dict[str, Dataset]:
        """Raw datasets to re-evaluate a saved run on: `split`, or the reported test split(s).

        Raises `ConfigError` for a split the task does not have.
        """
        raise NotImplementedError

    # ---- model and batches ------------------------------------------------------------
    def load_model(self, cfg: ExperimentConfig, task: str) -> tuple[Any, nn.Module]:
        """``(processor, model)``: the tokenizer / image processor and the pretrained model
        with a new head sized for `task`."""
        raise NotImplementedError

    def prepare_dataset(
        self, dataset: Dataset, task: str, processor: Any, cfg: ExperimentConfig
    ) -> Dataset:
        """One raw split -> model inputs (tokenise, transform); `cfg` is single-task."""
        raise NotImplementedError

    def prepare_splits(
        self, splits: Splits, task: str, processor: Any, cfg: ExperimentConfig
    ) -> Splits:
        """Every split of `splits` through `prepare_dataset`."""

        def prep(ds: Dataset) -> Dataset:
            return self.prepare_dataset(ds, task, processor, cfg)

        return replace(
            splits,
            train=prep(splits.train),
            selection=None if splits.selection is None else prep(splits.selection),
            test={name: prep(ds) for name, ds in splits.test.items()},
        )

    def data_collator(self, processor: Any) -> Callable[[list[dict[str, Any]]], Any]:
        raise NotImplementedError

    # ---- metrics --------------------------------------------------------------------
    def compute_metrics(self, task: str) -> Callable[[Any], dict[str, float]]:
        """`Trainer`'s ``compute_metrics`` for `task` (keys: the task spec's metrics)."""
        raise NotImplementedError

    def test_metrics(self, task: str, per_split: dict[str, dict[str, float]]) -> dict[str, float]:
        """``results.json["test"]`` from the metrics of each reported split.

        Default: the one reported split's metrics; a domain that reports several splits
        (GLUE's MNLI) names each split's metrics.
        """
        if len(per_split) != 1:
            raise ValueError(f"{task}: several test splits {sorted(per_split)}; merge them")
        return dict(next(iter(per_split.values())))

    # ---- training -------------------------------------------------------------------
    def training_overrides(self, cfg: ExperimentConfig) -> dict[str, Any]:
        """Extra `TrainingArguments` the domain needs (single-task `cfg`); they win over
        the shared ones. Default: none. (Math: length-grouped batches, loss-only eval.)"""
        return {}

    # ---- derived --------------------------------------------------------------------
    def primary_metric(self, task: str) -> str:
        return get_task(self.name, task).primary_metric

    def greater_is_better(self, task: str) -> bool:
        """Whether a larger primary metric is better (the task spec says; False for a loss)."""
        return get_task(self.name, task).greater_is_better

    def head_names(self, model: nn.Module) -> list[str]:
        return head_module_names(model, get_domain(self.name).peft_task_type or "SEQ_CLS")


# ------------------------------------------------------------------------ the sweep
def run_sweep(domain: Domain, cfg: ExperimentConfig, flags: argparse.Namespace) -> int:
    """Run every (seed, task); keep going past a failing task; 1 if any failed, else 0.

    `flags` is what `gpart.configs.parse_cli` returned (``seeds``, ``resume``, ``force``).
    Input errors common to every run are a `ConfigError` before the first run starts, and
    so is an existing run directory whose run used other data than the data given now
    (`DataChangedError`; ``--force`` re-runs on the new data).
    """
    domain.check_inputs(cfg)
    check_report_to(cfg)
    if cfg.model.quantization != "none":
        from gpart.runners.quantization import require_bitsandbytes

        require_bitsandbytes(cfg.model.quantization)
    for task in cfg.tasks:
        if cfg.effective_training(task).precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError("training.precision fp16: needs a CUDA device; use fp32 or bf16")
    if fsdp_launched() and not fsdp_device_available():
        # accelerate's FSDP plugin would stop inside Trainer with a traceback per process
        raise ConfigError(
            "accelerate launch with FSDP (configs/accelerate/fsdp.yaml) needs GPUs and finds "
            "none here; without GPUs train with DDP instead: accelerate launch --config_file "
            "configs/accelerate/ddp.yaml (gloo on the CPU)"
        )
    orders = {cfg.effective_training(t).data_order for t in cfg.tasks}
    if "reference" in orders and _num_processes() > 1:
        # Each process's global RNG would draw its own order (gpart.training.trainer).
        raise ConfigError(
            "training.data_order reference: the reference's order is drawn from one "
            "process's global RNG; under accelerate launch / torchrun pass "
            "training.data_order seeded"
        )
    if fsdp_launched() and cfg.model.quantization != "none":
        # FSDP would have to shard bitsandbytes' packed codes and their quantization
        # state; the runners have not been made to (a QLoRA base fits one GPU anyway).
        raise ConfigError(
            f"model.quantization {cfg.model.quantization}: not under FSDP; train the "
            "quantized base on one GPU (python src/scripts/..., no accelerate launch)"
        )
    resume, force = getattr(flags, "resume", False), getattr(flags, "force", False)
    configs = configs_for_seeds(flags)
    export = getattr(flags, "export_merged", None)
    targets: dict[tuple[str, int], Path] = {}
    if export is not None:
        targets = export_targets(export, [(t, c.seed) for c in configs for t in c.tasks])
        check_export_targets(targets, force=force)
    fingerprints = _check_recorded_data(domain, configs, force=force)
    failed: list[str] = []
    for seed_cfg in configs:
        for task in seed_cfg.tasks:
            label = f"{task} (seed {seed_cfg.seed})"
            try:
                if task not in fingerprints:  # once per task: every seed reads the same data
                    fingerprints[task] = domain.data_fingerprint(seed_cfg.for_task(task), task)
                out = run_task(
                    domain,
                    seed_cfg,
                    task,
                    resume=resume,
                    force=force,
                    fingerprint=fingerprints[task],
                )
                if export is not None:
                    _export(domain, seed_cfg, task, out, targets[(task, seed_cfg.seed)], flags)
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


def _num_processes() -> int:
    from accelerate import PartialState

    return PartialState().num_processes


def _export(
    domain: Domain, cfg: ExperimentConfig, task: str, out: Path, dest: Path, flags: Any
) -> None:
    """``--export_merged``: the main process merges and saves; the others wait for it."""
    from accelerate import PartialState

    dist = PartialState()
    if dist.is_main_process:
        path = export_merged(domain, cfg, task, out, dest, getattr(flags, "export_dtype", "bf16"))
        print(f"{task} (seed {cfg.seed}): merged model -> {path}")
    dist.wait_for_everyone()


def _check_recorded_data(
    domain: Domain, configs: list[ExperimentConfig], *, force: bool
) -> dict[str, dict[str, Any]]:
    """Compare every existing run directory's recorded data with today's, before any run.

    Returns the fingerprints computed, by task, for the runs to reuse. Raises one
    `DataChangedError` naming every run whose data changed, so nothing is touched.
    """
    fingerprints: dict[str, dict[str, Any]] = {}
    if force:
        return fingerprints
    problems = []
    for cfg in configs:
        for task in cfg.tasks:
            out = find_run_dir(cfg, task)
            if not (out / "config.json").exists():
                continue
            if task not in fingerprints:
                try:
                    fingerprints[task] = domain.data_fingerprint(cfg.for_task(task), task)
                except DataError as exc:
                    raise ConfigError(str(exc)) from None
            try:
                check_recorded_data(out, fingerprints[task], f"{task} (seed {cfg.seed})")
            except DataChangedError as exc:
                problems.append(str(exc))
    if problems:
        raise DataChangedError("; ".join(problems))
    return fingerprints


def check_recorded_data(out: Path, fingerprint: dict[str, Any], label: str) -> None:
    """Raise `DataChangedError` if the run in `out` recorded other data than `fingerprint`.

    Runs written before fingerprints were recorded have nothing to compare and pass.
    """
    path = out / "config.json"
    if not path.exists():
        return
    old = read_json(path).get("data_fingerprint")
    if old is not None and not same_data(old, fingerprint):
        raise DataChangedError(
            f"{label}: {out} holds a run on other data: {describe_change(old, fingerprint)}; "
            "pass --force to re-run it on this data, or give another --output_dir"
        )


# ------------------------------------------------------------------------ one run
def run_task(
    domain: Domain,
    cfg: ExperimentConfig,
    task: str,
    *,
    resume: bool = False,
    force: bool = False,
    fingerprint: dict[str, Any] | None = None,
) -> Path:
    """Train and evaluate one task for `cfg.seed`; return the run directory.

    `fingerprint` is the task's `Domain.data_fingerprint` when the caller has it already.
    A run directory whose recorded data differ is refused (`DataChangedError`) unless
    `force`, finished or not.

    Under ``accelerate launch`` / torchrun every process runs this: all of them decide from
    the same files (nobody writes before the first barrier), all of them train and
    evaluate (Trainer shards the work), and only the main process writes files or prints.
    """
    from accelerate import PartialState

    dist = PartialState()
    single = cfg.for_task(task)
    tc = single.training
    out = find_run_dir(cfg, task)
    results_path = out / RESULTS_FILENAME
    if fingerprint is None:
        fingerprint = domain.data_fingerprint(single, task)
    if not force:
        check_recorded_data(out, fingerprint, f"{task} (seed {cfg.seed})")
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
    checkpoint = last_checkpoint(out) if resume else None

    # Everything that can fail on user input happens before the run directory exists.
    # Seeded before anything draws: the new head's initialisation (and whatever an adapter
    # draws) is then the same on every run of the same command, as in the reference
    # (its utils/trainer.py::run_task calls set_seed before loading the model).
    set_seed(cfg.seed)
    splits = domain.load_splits(single, task)
    processor, base = domain.load_model(single, task)
    heads = domain.head_names(base)
    model = apply_adapter(base, single, head_names=heads)
    params = parameter_breakdown(model, heads)
    data = domain.prepare_splits(splits, task, processor, single)
    if cfg.data.max_eval_samples is not None:
        data.test = {
            k: v.select(range(min(cfg.data.max_eval_samples, len(v)))) for k, v in data.test.items()
        }
    # Trainer() re-seeds; unless training.reseed_trainer, training goes on from the set-up's
    # state
    with contextlib.nullcontext() if tc.reseed_trainer else rng_state_kept():
        trainer = build_trainer(domain, single, task, model, processor, data, heads, out)
    trainer.add_callback(
        RunParamsCallback(
            run_parameters(
                single,
                fingerprint_digest=fingerprint_digest(fingerprint),
                params=params,
                run_name=out.parent.parent.name,
                run_dir=str(out),
            ),
            trainer.callback_handler.callbacks,
        )
    )

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
                "data_fingerprint": fingerprint,
                "provenance": provenance(),
            },
        )
    dist.wait_for_everyone()

    start = time.time()
    if resume and checkpoint is None and dist.is_main_process:
        print(f"{task} (seed {cfg.seed}): no checkpoint in {out}; starting from scratch")
    throughput = ThroughputCallback()
    trainer.add_callback(throughput)
    with trackers_open_until_done(trainer):  # the test metrics join the tracker's run
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        save_trained_from(trainer, out / ADAPTER_DIR, is_main=dist.is_main_process)
        test = evaluate_test(trainer, domain, task, data.test)  # every process: it is sharded
    primary = domain.primary_metric(task)
    state = trainer.state
    selection: dict[str, Any] = dict(data.info)  # as prepared (e.g. length-policy counts)
    if tc.model_selection == "best":
        selection.update(
            metric=primary,
            best_value=state.best_metric,
            best_step=_step_of(state.best_model_checkpoint),
            best_checkpoint=_rel(state.best_model_checkpoint, out),
        )
    selection["last_step"] = state.global_step
    selection["last_checkpoint"] = _rel(last_checkpoint(out), out)
    if dist.is_main_process:
        record = build_results(
            run_name=out.parent.parent.name,
            adapter_type=cfg.adapter.type,
            task=task,
            seed=cfg.seed,
            primary_metric=primary,
            test=test,
            selection=selection,
            params={k: v for k, v in params.items() if isinstance(v, int)},
            wall_time_s=time.time() - start,
            base_model=cfg.model.base_model,
            model_size=cfg.model.model_size,  # tables are per backbone size
            epochs_trained=state.epoch,
            resumed_from=_rel(checkpoint, out),
            data_fingerprint=fingerprint_digest(fingerprint),
            # processes that trained together: the effective batch is batch_size x this
            world_size=dist.num_processes,
            # how they did (NO, MULTI_GPU, MULTI_CPU, FSDP, ...): accelerate falls back from
            # FSDP to DDP on a CPU without a word, so the record says what really ran
            distributed_type=str(trainer.accelerator.distributed_type.value),
            train=train_summary(output, throughput),
        )
        write_json_atomic(results_path, record)
        if test:
            print(f"{task} (seed {cfg.seed}): {primary} = {test[primary]:.4f} -> {out}")
        else:  # nothing held out: its scores come from evaluations of the saved run
            print(f"{task} (seed {cfg.seed}): trained, nothing held out to report -> {out}")
    dist.wait_for_everyone()  # no process starts the next run before the files exist
    return out


@contextlib.contextmanager
def rng_state_kept() -> Iterator[None]:
    """Put every global RNG (Python, numpy, torch CPU and CUDA) back as it was on entry.

    `Trainer.__init__` calls ``set_seed(args.seed)``, which would restart the streams that
    dropout and ``training.data_order reference`` draw from. The reference trains straight
    on from the state its set-up (``set_seed``, model, adapter) left, so the runners build
    their Trainer inside this. (`Trainer` also saves and restores these states with each
    checkpoint, which is what makes a resumed run continue the same streams.)
    """
    py, np_state = random.getstate(), np.random.get_state()
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def training_arguments(
    cfg: ExperimentConfig,
    task: str,
    primary: str,
    out: Path,
    *,
    greater_is_better: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """`TrainingConfig` (single-task `cfg`) -> `transformers.TrainingArguments`.

    `greater_is_better` is the primary metric's direction (`Domain.greater_is_better`);
    `overrides` are the domain's own arguments (`Domain.training_overrides`), applied last.
    """
    from transformers import TrainingArguments

    tc = cfg.training
    best = tc.model_selection == "best"
    every = "steps" if tc.eval_every else "epoch"
    keep = tc.save_total_limit
    if best and keep is not None and keep < 2:
        # With one checkpoint kept, Trainer deletes the last one at the end when the best is
        # older: keep both, so the last model stays available (eval --which last, resume).
        keep = 2
    kwargs: dict[str, Any] = dict(
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
        **mixed_precision(tc.precision),
        eval_strategy=every if best else "no",
        eval_steps=tc.eval_every,
        save_strategy=every,
        save_steps=tc.eval_every,
        save_total_limit=keep,
        load_best_model_at_end=best,
        metric_for_best_model=primary if best else None,
        greater_is_better=greater_is_better,
        logging_steps=tc.logging_steps,
        report_to=list(tc.report_to),
        run_name=tracker_run_name(cfg, out.parent.parent.name, task),
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=tc.num_workers,
        label_smoothing_factor=tc.label_smoothing,
        activation_checkpointing=tc.gradient_checkpointing,  # transformers 5's name
        torch_compile=tc.torch_compile,
        full_determinism=tc.deterministic,
        remove_unused_columns=False,
        # Named, not inferred: Trainer reads label names off forward()'s signature, which a
        # peft wrapper without a task type hides (image classification).
        label_names=["labels"],
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
        # data_order "reference" brings its own RandomSampler; accelerate's seedable one
        # would replace it (gpart.training.trainer)
        accelerator_config={"use_seedable_sampler": tc.data_order == "seeded"},
    )
    kwargs.update(overrides or {})
    return TrainingArguments(**kwargs)


def build_trainer(
    domain: Domain,
    cfg: ExperimentConfig,
    task: str,
    model: nn.Module,
    processor: Any,
    data: Splits,
    heads: list[str],
    out: Path,
) -> GroupedTrainer:
    """The `GroupedTrainer` of one run (single-task `cfg`), writing into `out`."""
    from transformers import EarlyStoppingCallback

    tc = cfg.training
    best = tc.model_selection == "best"
    args = training_arguments(
        cfg,
        task,
        domain.primary_metric(task),
        out,
        greater_is_better=domain.greater_is_better(task),
        overrides=domain.training_overrides(cfg),
    )
    callbacks: list[Any] = [MetricsJsonlCallback(out / "metrics.jsonl")]
    if cfg.model.quantization in ("nf4", "fp4"):
        from gpart.runners.quantization import UnpackCpuLayoutCallback

        callbacks.append(UnpackCpuLayoutCallback())  # evaluations may repack 4-bit weights
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
        data_collator=domain.data_collator(processor),
        processing_class=processor,
        compute_metrics=domain.compute_metrics(task),
        callbacks=callbacks,
        head_lr=tc.head_lr,
        head_weight_decay=tc.head_weight_decay,
        decay_theta=tc.decay_theta,
        warmup_ratio=tc.warmup_ratio,
        head_modules=heads,
        schedule_steps=tc.schedule_steps,
        data_order=tc.data_order,
        decay_biases_and_norms=tc.decay_biases_and_norms,
        decay_vectors=tc.decay_vectors,
    )


class ThroughputCallback(TrainerCallback):
    """Input tokens seen and wall time of this training session (a resumed run counts
    from where it resumed), for ``results.json["train"]``.

    Tokens are what `Trainer` counts with ``include_num_input_tokens_seen`` (a domain turns
    it on through `Domain.training_overrides`); without it, only the time is known.

    Peak memory is this process's: on CUDA ``torch.cuda.max_memory_allocated`` of its device
    since training began (what the tensors held, as `gpart.bench` reports it; the caching
    allocator reserves more), elsewhere the process's peak resident set (``ru_maxrss``, since
    the process started, so it includes loading). Under DDP / FSDP every process holds its
    own; the main process's is recorded.
    """

    def __init__(self) -> None:
        self._start_tokens = 0
        self._start_time: float | None = None
        self._cuda_device: Any = None
        self.tokens = 0
        self.seconds = 0.0
        self.peak_memory: tuple[int, str] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        device = getattr(args, "device", None)
        if getattr(device, "type", None) == "cuda" and torch.cuda.is_available():
            self._cuda_device = device
            torch.cuda.reset_peak_memory_stats(device)
        self._start_time = time.perf_counter()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._start_time is not None:
            self.seconds = time.perf_counter() - self._start_time
        self.tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0) - self._start_tokens
        self.peak_memory = _peak_memory(self._cuda_device)


def _peak_memory(cuda_device: Any) -> tuple[int, str] | None:
    """(bytes, how it was measured) for `ThroughputCallback`, or None where unknown."""
    if cuda_device is not None:
        return int(torch.cuda.max_memory_allocated(cuda_device)), "torch.cuda.max_memory_allocated"
    try:
        import resource
    except ImportError:  # Windows has no `resource` module
        return None
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale, "peak RSS (ru_maxrss)"


def train_summary(output: Any, throughput: ThroughputCallback) -> dict[str, Any]:
    """``results.json["train"]``: the mean training loss of this session, its speed and its
    peak memory."""
    out: dict[str, Any] = {}
    loss = getattr(output, "training_loss", None)
    if loss is not None:
        out["loss"] = float(loss)
    metrics = getattr(output, "metrics", None) or {}
    if "train_samples_per_second" in metrics:
        out["samples_per_s"] = float(metrics["train_samples_per_second"])
    if throughput.seconds > 0:
        out["seconds"] = throughput.seconds
        if throughput.tokens > 0:
            out["tokens"] = throughput.tokens
            out["tokens_per_s"] = throughput.tokens / throughput.seconds
    if throughput.peak_memory is not None:
        out["peak_memory_bytes"], out["peak_memory_metric"] = throughput.peak_memory
    return out


def evaluate_test(
    trainer: Any, domain: Domain, task: str, test_sets: dict[str, Dataset]
) -> dict[str, float]:
    """Evaluate every reported split; ``results.json["test"]`` as the domain merges them
    (empty when there is none: a math run that holds no rows out)."""
    if not test_sets:
        return {}
    per_split = {}
    for split, ds in test_sets.items():
        metrics = trainer.evaluate(eval_dataset=ds, metric_key_prefix="test")
        per_split[split] = strip_metric_prefix(metrics, "test", keep=[domain.primary_metric(task)])
    return domain.test_metrics(task, per_split)


def last_checkpoint(out: Path) -> Path | None:
    """The newest ``checkpoint-*`` folder of a run directory, or None."""
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
