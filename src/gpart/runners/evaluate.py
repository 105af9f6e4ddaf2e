"""Re-evaluate saved runs of any domain: the selected (best) or the last model, on any split.

Reads each run's ``config.json``, rebuilds the base model through the run's `Domain`, loads
what the run saved (``adapter/``, or the last Trainer checkpoint), and writes
``eval_<which>_<split>.json`` into the run directory. ``results.json`` is never touched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gpart.configs import ConfigError, exit_on_config_error, experiment_from_dict
from gpart.data.loading import DataError
from gpart.metrics import strip_metric_prefix
from gpart.results import RESULTS_FILENAME, read_json, write_json_atomic
from gpart.runners.common import ADAPTER_DIR, load_trained, mixed_precision
from gpart.runners.core import Domain, last_checkpoint

WHICH = ("best", "last")


def build_eval_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("runs", nargs="+", help="run directories (seed_*), or parents holding many")
    p.add_argument(
        "--which",
        choices=WHICH,
        default="best",
        help="best: the saved adapter/ (the selected model); last: the last checkpoint",
    )
    p.add_argument(
        "--split",
        default=None,
        help="split to evaluate (default: the task's reported test split(s))",
    )
    p.add_argument("--data_dir", default=None, help="local data (default: the run's own)")
    p.add_argument("--base_model", default=None, help="base model (default: the run's own)")
    p.add_argument("--batch_size", type=int, default=None, help="default: the run's eval batch")
    return p


def find_runs(paths: Sequence[str]) -> list[Path]:
    """Run directories given, or found below the given parents (``seed_*/config.json``)."""
    runs: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"{raw}: no such file or directory")
        found = (
            [path]
            if (path / "config.json").exists()
            else sorted(
                p.parent for p in path.rglob("config.json") if p.parent.name.startswith("seed_")
            )
        )
        if not found:
            raise ConfigError(f"{raw}: holds no run (no seed_*/config.json below it)")
        runs += [r for r in found if r not in runs]
    return runs


def weights_dir(run: Path, which: str) -> Path:
    """The weights to evaluate: ``adapter/`` (best) or the recorded last checkpoint (last)."""
    if which == "best":
        path = run / ADAPTER_DIR
        if not path.is_dir():
            raise ConfigError(f"{run}: no {ADAPTER_DIR}/ (the run did not finish)")
        return path
    last = last_checkpoint(run)
    if last is None:
        raise ConfigError(f"{run}: no checkpoint-* to take the last model from")
    results = run / RESULTS_FILENAME
    if results.exists():
        # Never pass another checkpoint off as the last model (e.g. runs whose Trainer
        # deleted the last checkpoint and kept only the best one).
        last_step = read_json(results).get("selection", {}).get("last_step")
        step = last.name.rsplit("-", 1)[-1]
        if last_step is not None and step != str(last_step):
            raise ConfigError(
                f"{run}: the last model (step {last_step}) was not kept; the newest checkpoint "
                f"is {last.name}. Use --which best, or re-train with "
                "training.save_total_limit 2 or more"
            )
    return last


def evaluate_run(
    domain: Domain,
    run: Path,
    *,
    which: str = "best",
    split: str | None = None,
    data_dir: str | None = None,
    base_model: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Evaluate one run; write and return its ``eval_<which>_<split>.json`` record."""
    from transformers import Trainer, TrainingArguments

    cfg = experiment_from_dict(read_json(run / "config.json")["config"])
    if cfg.domain != domain.name:
        raise ConfigError(f"{run}: a {cfg.domain} run; use that domain's eval script")
    task = cfg.tasks[0]
    if base_model:
        cfg.model.base_model = base_model
    data_dir = data_dir if data_dir is not None else cfg.data.data_dir
    raw = domain.load_eval_sets(cfg, task, data_dir, split)
    weights = weights_dir(run, which)

    processor, base = domain.load_model(cfg, task)
    model = load_trained(base, cfg, weights).eval()
    tc = cfg.training
    record: dict[str, Any] = {
        "run": str(run),
        "task": task,
        "which": which,
        "weights": str(weights),
        "primary_metric": domain.primary_metric(task),
        "splits": {},
    }
    start = time.time()
    # Trainer wants an output_dir; evaluation writes nothing there, so keep runs clean.
    with tempfile.TemporaryDirectory(prefix="gpart-eval-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_eval_batch_size=batch_size or tc.eval_batch_size or tc.batch_size,
            report_to=[],
            remove_unused_columns=False,
            label_names=["labels"],
            dataloader_pin_memory=torch.cuda.is_available(),
            use_cpu=not torch.cuda.is_available(),
            **mixed_precision(tc.precision),
        )
        trainer = Trainer(
            model=model,
            args=args,
            data_collator=domain.data_collator(processor),
            compute_metrics=domain.compute_metrics(task),
        )
        for name, ds in raw.items():
            prepared = domain.prepare_dataset(ds, task, processor, cfg)
            metrics = trainer.evaluate(eval_dataset=prepared, metric_key_prefix="eval")
            record["splits"][name] = strip_metric_prefix(
                metrics, "eval", keep=[domain.primary_metric(task)]
            )
    record["wall_time_s"] = time.time() - start
    write_json_atomic(run / f"eval_{which}_{split or 'test'}.json", record)
    return record


def eval_main(domain: Domain, argv: Sequence[str] | None, *, prog: str, description: str) -> int:
    """The eval scripts' command line: every run given; 1 if any failed, 2 on bad input."""
    with exit_on_config_error():
        try:
            args = build_eval_parser(prog, description).parse_args(argv)
        except SystemExit as exc:  # argparse: usage error already printed
            return 2 if exc.code else 0
        failed = 0
        for run in find_runs(args.runs):
            try:
                rec = evaluate_run(
                    domain,
                    run,
                    which=args.which,
                    split=args.split,
                    data_dir=args.data_dir,
                    base_model=args.base_model,
                    batch_size=args.batch_size,
                )
            except (ConfigError, DataError, FileNotFoundError, ValueError) as exc:
                print(f"error: {run}: {' '.join(str(exc).split())}", file=sys.stderr)
                failed += 1
                continue
            pm = rec["primary_metric"]
            scores = ", ".join(f"{s} {m[pm]:.4f}" for s, m in rec["splits"].items())
            print(f"{run}: {args.which} {pm}: {scores}")
        return 1 if failed else 0
