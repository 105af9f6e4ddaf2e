"""The math domain, training side: a decoder LLM fine-tuned on MetaMathQA, on the shared
run life cycle (``finetune_metamath.py``).

What is the domain's own: the data (`gpart.data.math`: the hub or a local file, the prompt
template, the labels, the length policy, cached tokens), the causal LM and its tokenizer (a
pad token set to EOS when it has none, never a new token), dynamic padding, length-grouped
batches when asked (``data.group_by_length``), and what a run reports: the training loss
and tokens/s (``results.json["train"]``, written by core for every domain) and, when rows
are held out, the loss on them (``results.json["test"]["loss"]``, lower is better).
That loss tracks the fit, not the skill: GSM8K / MATH accuracy comes from generation with
the trained adapter, a separate evaluation step (`gpart.evaluation` checks the answers).

Only the `metamathqa` task trains; `gsm8k` and `math` are the domain's evaluation sets
(see `gpart.configs.tasks`) and are refused here with a pointer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from gpart.configs import ConfigError, ExperimentConfig, get_task
from gpart.configs.tasks import CausalLMTrainingTask
from gpart.data.fingerprint import file_digest, hub_fingerprint
from gpart.data.loading import DataError, Splits
from gpart.data.math import (
    causal_lm_collator,
    cut_splits,
    load_metamath_raw,
    tokenize_math,
    train_file,
)
from gpart.runners.cli import build_runner_parser, cli_main
from gpart.runners.common import fsdp_launched, load_base_model, load_pretrained
from gpart.runners.core import Domain, run_sweep

if TYPE_CHECKING:
    from datasets import Dataset


class MathDomain(Domain):
    """MetaMathQA fine-tuning of a causal LM for `gpart.runners.core`."""

    name = "math"

    # ---- inputs -----------------------------------------------------------------------
    def check_inputs(self, cfg: ExperimentConfig) -> None:
        """Only training tasks run; a local file, when named, exists; the batching and the
        data order do not contradict each other."""
        for task in cfg.tasks:
            if not isinstance(get_task("math", task), CausalLMTrainingTask):
                raise ConfigError(
                    f"--tasks {task}: an evaluation set (scored by generation), not a training "
                    "task; fine-tune on metamathqa and evaluate the trained run on it"
                )
        orders = {cfg.effective_training(t).data_order for t in cfg.tasks}
        if cfg.data.group_by_length and "reference" in orders:
            raise ConfigError(
                "data.group_by_length true: length-grouped batches replace the order of "
                "training.data_order reference; pass data.group_by_length false"
            )
        try:
            train_file(cfg.data.train_file, cfg.data.data_dir)
        except DataError as exc:
            raise ConfigError(str(exc)) from None

    def data_fingerprint(self, cfg: ExperimentConfig, task: str) -> dict[str, Any]:
        path = train_file(cfg.data.train_file, cfg.data.data_dir)
        spec = get_task("math", task)
        if path is not None:
            return {
                "kind": "local",
                "root": str(path.resolve().parent),
                "files": {path.name: {"size": path.stat().st_size, "sha256": file_digest(path)}},
            }
        return hub_fingerprint(spec.source, None, {"train": self._raw(cfg, task)})

    def _raw(self, cfg: ExperimentConfig, task: str) -> Dataset:
        return load_metamath_raw(
            get_task("math", task).source, train_file(cfg.data.train_file, cfg.data.data_dir)
        )

    def load_splits(self, cfg: ExperimentConfig, task: str) -> Splits:
        return cut_splits(
            self._raw(cfg, task),
            get_task("math", task),
            heldout=cfg.data.heldout_samples,
            max_train_samples=cfg.data.max_train_samples,
            subset=cfg.data.subset,
            seed=cfg.seed,
            model_selection=cfg.training.model_selection,
        )

    def load_eval_sets(
        self, cfg: ExperimentConfig, task: str, data_dir: str | None, split: str | None
    ) -> dict[str, Dataset]:
        if split not in (None, "heldout"):
            raise ConfigError(f"--split {split!r}: {task} has the split heldout")
        if cfg.data.heldout_samples == 0:
            raise ConfigError(
                f"{task}: trained with data.heldout_samples 0, so no rows were held out to "
                "re-evaluate on; score the run with eval_math.py"
            )
        local = replace_data_dir(cfg, data_dir)
        return dict(self.load_splits(local, task).test)

    # ---- model and batches ------------------------------------------------------------
    def load_model(self, cfg: ExperimentConfig, task: str) -> tuple[Any, Any]:
        """The tokenizer (pad = EOS when it has no pad token) and the causal LM.

        With bf16 on a CUDA device and a parameter-efficient adapter the frozen weights
        load in bf16 (half the memory; the adapter's parameters stay fp32, as peft and
        GPart keep them); full fine-tuning and CPU runs load fp32. Under FSDP the model
        loads fp32 too: FSDP1 flattens the root unit's tensors (embeddings, final norm,
        LM head and GPart's `theta`, which belongs to no decoder layer) into one tensor of
        one dtype, so a bf16 base beside the fp32 theta cannot be wrapped; FSDP's mixed
        precision casts to bf16 for compute instead, and the shards keep fp32 masters.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = load_pretrained(cfg, AutoTokenizer, "a tokenizer")
        tokenizer.padding_side = "right"
        kwargs: dict[str, Any] = {}
        if (
            cfg.training.precision == "bf16"
            and torch.cuda.is_available()
            and cfg.adapter.type != "full"
            and not fsdp_launched()
        ):
            kwargs["dtype"] = torch.bfloat16
        model = load_base_model(cfg, task, AutoModelForCausalLM, **kwargs)
        set_pad_token(tokenizer, model.get_input_embeddings().num_embeddings)
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.use_cache = False  # no KV cache while training (and checkpointing)
        return tokenizer, model

    def prepare_dataset(
        self, dataset: Dataset, task: str, processor: Any, cfg: ExperimentConfig
    ) -> Dataset:
        return self._tokenize(dataset, processor, cfg)[0]

    def prepare_splits(
        self, splits: Splits, task: str, processor: Any, cfg: ExperimentConfig
    ) -> Splits:
        """Tokenise (cached) every split; the length policy's counts go into ``info``."""
        train, counts = self._tokenize(splits.train, processor, cfg)
        test = {k: self._tokenize(v, processor, cfg) for k, v in splits.test.items()}
        info = dict(splits.info)
        info["length_policy"] = cfg.data.length_policy
        info["max_seq_length"] = cfg.training.max_seq_length
        info["train_tokens"] = counts["tokens"]
        for key in ("over_length", "truncated", "dropped"):
            info[f"train_{key}"] = counts[key]
            if test:
                info[f"heldout_{key}"] = sum(c[key] for _, c in test.values())
        info["token_cache"] = counts["cache"]
        over = counts["over_length"] + sum(c["over_length"] for _, c in test.values())
        if over:
            verb = "dropped" if cfg.data.length_policy == "drop" else "truncated (front)"
            print(
                f"{task}: {over} example(s) longer than training.max_seq_length "
                f"{cfg.training.max_seq_length} tokens {verb} (data.length_policy "
                f"{cfg.data.length_policy}; train {counts['over_length']}, held-out "
                f"{over - counts['over_length']})"
            )
        selection = None
        if splits.selection is not None:
            selection = test["heldout"][0]
        return Splits(
            task=splits.task,
            train=train,
            selection=selection,
            test={k: v[0] for k, v in test.items()},
            info=info,
        )

    def _tokenize(
        self, dataset: Dataset, tokenizer: Any, cfg: ExperimentConfig
    ) -> tuple[Dataset, dict[str, Any]]:
        d = cfg.data
        return tokenize_math(
            dataset,
            tokenizer,
            data_key=dataset._fingerprint,  # the rows: source and selection
            template=d.prompt_template,
            system_prompt=d.system_prompt,
            train_on_prompt=d.train_on_prompt,
            max_len=cfg.training.max_seq_length,
            policy=d.length_policy,
            num_proc=cfg.training.num_workers or None,
        )

    def data_collator(self, processor: Any) -> Any:
        # multiples of 8 feed tensor cores on CUDA; no gain on a CPU
        return causal_lm_collator(processor, 8 if torch.cuda.is_available() else None)

    def training_overrides(self, cfg: ExperimentConfig) -> dict[str, Any]:
        """Length-grouped batches (``data.group_by_length``), the loss alone at evaluation
        (no vocabulary-sized logits gathered), input tokens counted (tokens/s), and
        non-reentrant activation checkpointing (works with a frozen embedding)."""
        out: dict[str, Any] = {
            "prediction_loss_only": True,
            "include_num_input_tokens_seen": "non_padding",
        }
        if cfg.data.group_by_length:
            out |= {"train_sampling_strategy": "group_by_length", "length_column_name": "length"}
        if cfg.training.gradient_checkpointing:
            out["activation_checkpointing_kwargs"] = {"use_reentrant": False}
        return out

    # ---- metrics ----------------------------------------------------------------------
    def compute_metrics(self, task: str) -> Any:
        return None  # the loss is Trainer's own: eval_loss -> results.json test.loss


def set_pad_token(tokenizer: Any, num_embeddings: int) -> None:
    """Give a tokenizer without a pad token its EOS as pad (the vocabulary is unchanged;
    padded positions are masked out of attention and loss anyway).

    A pad token outside the model's embedding table (`num_embeddings` rows) is replaced by
    EOS too: transformers' Qwen2 tokenizer class adds ``<|endoftext|>`` as a *new* token
    when a tokenizer folder names no pad token, and its id then indexes past the model's
    embeddings (an IndexError on CPU, a device-side assert on CUDA, at the first padded
    batch).
    """
    pad_id = tokenizer.pad_token_id
    outside = pad_id is not None and pad_id >= num_embeddings
    if tokenizer.pad_token is None or outside:
        if tokenizer.eos_token is None:
            raise ConfigError("the tokenizer has neither a pad nor an EOS token")
        if outside:
            print(
                f"note: the tokenizer's pad token {tokenizer.pad_token!r} (id {pad_id}) is "
                f"not among the model's {num_embeddings} embeddings; padding with EOS "
                f"{tokenizer.eos_token!r} instead"
            )
        tokenizer.pad_token = tokenizer.eos_token


def replace_data_dir(cfg: ExperimentConfig, data_dir: str | None) -> ExperimentConfig:
    """`cfg` reading its data from `data_dir` (a re-evaluation's own), when given."""
    if data_dir is None:
        return cfg
    import copy

    out = copy.deepcopy(cfg)
    out.data.data_dir = data_dir
    out.data.train_file = None
    return out


MATH = MathDomain()


def main(argv: Sequence[str] | None = None) -> int:
    """``finetune_metamath.py``: every (seed, task) of the command line, one run each."""
    parser = build_runner_parser(
        "math",
        prog="finetune_metamath.py",
        description="Fine-tune a decoder LLM on MetaMathQA with GPart or a baseline.",
    )
    return cli_main(functools.partial(run_sweep, MATH), argv, domain="math", parser=parser)


__all__ = ["MATH", "MathDomain", "main", "set_pad_token"]
