"""The GLUE domain: RoBERTa (or any encoder) on GLUE, on the shared run life cycle.

What is GLUE's own lives here: its data (`gpart.data.glue`: the hub or ``--data_dir``,
the seeded, stratified selection split carved from train), the encoder with a new
sequence-classification head, dynamic padding, its metrics (`gpart.metrics.glue`) and
MNLI's two reported splits. The sweep, run directories, Trainer, results and
re-evaluation are `gpart.runners.core` / `gpart.runners.evaluate`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpart.configs import ConfigError, ExperimentConfig, get_task
from gpart.data.fingerprint import hub_fingerprint
from gpart.data.glue import glue_data_collator, load_glue_raw, load_glue_splits, tokenize_glue
from gpart.data.loading import Splits
from gpart.metrics.glue import make_compute_metrics, merge_split_metrics
from gpart.runners.cli import build_runner_parser, cli_main
from gpart.runners.common import load_base_model, load_pretrained
from gpart.runners.core import Domain, run_sweep
from gpart.runners.evaluate import eval_main as _eval_main

if TYPE_CHECKING:
    from datasets import Dataset


class GlueDomain(Domain):
    """GLUE's data, model, collator and metrics for `gpart.runners.core`."""

    name = "glue"

    def load_splits(self, cfg: ExperimentConfig, task: str) -> Splits:
        return load_glue_splits(
            get_task("glue", task),
            cfg.data.data_dir,
            model_selection=cfg.training.model_selection,
            seed=cfg.seed,
            max_train_samples=cfg.data.max_train_samples,
            selection_split=cfg.data.selection_split,
        )

    def data_fingerprint(self, cfg: ExperimentConfig, task: str) -> dict[str, Any]:
        if cfg.data.data_dir is not None:
            return super().data_fingerprint(cfg, task)
        spec = get_task("glue", task)
        # From the local hub cache once downloaded: the splits' `datasets` fingerprints.
        return hub_fingerprint(spec.source, spec.subset, load_glue_raw(spec, None))

    def load_eval_sets(
        self, cfg: ExperimentConfig, task: str, data_dir: str | None, split: str | None
    ) -> dict[str, Dataset]:
        spec = get_task("glue", task)
        raw = load_glue_raw(spec, data_dir)
        names = [split] if split else list(spec.test_split_names)
        for name in names:
            if name not in raw:
                raise ConfigError(f"--split {name!r}: {task} has splits {', '.join(raw)}")
        return {name: raw[name] for name in names}

    def load_model(self, cfg: ExperimentConfig, task: str) -> tuple[Any, Any]:
        """The tokenizer and the pretrained encoder with a new head sized for `task`."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        spec = get_task("glue", task)
        tokenizer = load_pretrained(cfg, AutoTokenizer, "a tokenizer")
        base = load_base_model(
            cfg,
            task,
            AutoModelForSequenceClassification,
            num_labels=spec.num_labels,
            # the head is new for every task (a checkpoint's own head may have another size)
            ignore_mismatched_sizes=True,
            problem_type=spec.problem_type,
        )
        return tokenizer, base

    def prepare_dataset(
        self, dataset: Dataset, task: str, processor: Any, cfg: ExperimentConfig
    ) -> Dataset:
        return tokenize_glue(dataset, task, processor, cfg.training.max_seq_length)

    def data_collator(self, processor: Any) -> Any:
        return glue_data_collator(processor)

    def compute_metrics(self, task: str) -> Any:
        return make_compute_metrics(task)

    def test_metrics(self, task: str, per_split: dict[str, dict[str, float]]) -> dict[str, float]:
        return merge_split_metrics(task, per_split)


GLUE = GlueDomain()


def build_glue_parser():
    return build_runner_parser(
        "glue",
        prog="finetune_roberta_glue.py",
        description="Fine-tune RoBERTa (or any encoder) on GLUE with GPart or a baseline.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``finetune_roberta_glue.py``: every (seed, task) of the command line, one run each."""
    return cli_main(
        functools.partial(run_sweep, GLUE), argv, domain="glue", parser=build_glue_parser()
    )


def eval_main(argv: Sequence[str] | None = None) -> int:
    """``eval_roberta_glue.py``: re-evaluate saved GLUE runs without touching results.json."""
    return _eval_main(
        GLUE,
        argv,
        prog="eval_roberta_glue.py",
        description="Re-evaluate saved GLUE runs without touching their results.json.",
    )


__all__ = ["GLUE", "GlueDomain", "build_glue_parser", "eval_main", "main"]
