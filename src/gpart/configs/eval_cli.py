"""``eval_math.py``'s command line: a few flags, then ``key value`` overrides, as the
training runners take them (`gpart.configs.cli`).

    eval_math.py --adapter_path logs/<run>/metamathqa/seed_0 --dataset gsm8k math \\
        data_file.gsm8k gsm8k_test.jsonl data_file.math math_test.jsonl max_samples 100

Flags say what is evaluated and what to do: ``--adapter_path``, ``--base_model``,
``--dataset`` and ``--output_dir`` are spellings of the keys of the same names
(``datasets`` for ``--dataset``); ``--force``, ``--rescore FILE`` and ``--print_config``
are actions. Every other setting is a key of `EvalConfig`, its field docs the manual;
``data_file.<dataset> PATH`` names one set's local file. Any mistake raises `ConfigError`
(one ``error:`` line under `exit_on_config_error`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gpart.configs.cli import (
    ConfigErrorParser,
    check_rest,
    join_multi_values,
    split_overrides,
)
from gpart.configs.coerce import coerce
from gpart.configs.errors import ConfigError, did_you_mean
from gpart.configs.schema import DataConfig, field_types
from gpart.configs.tasks import EVAL_TASKS

BACKENDS = ("hf", "vllm")
# The prompt templates are the training data's (`data.prompt_template`).
TemplateName = field_types(DataConfig)["prompt_template"]


@dataclass
class EvalConfig:
    """Every setting of an evaluation by generation (``eval_math.py``)."""

    # A finetune_metamath.py run directory (its config.json gives the base model, the
    # prompt template and the system prompt; the weights are its adapter/), the adapter/
    # folder of one, or any peft / GPart adapter folder. None: the base model alone.
    adapter_path: str | None = None
    # The base model (hub id or directory): overrides the run's or the adapter's; alone,
    # it is what is evaluated (then output_dir is needed).
    base_model: str | None = None
    # The evaluation sets, by their spec's names (gpart.configs.tasks.EVAL_TASKS).
    datasets: list[str] = field(default_factory=lambda: ["gsm8k", "math"])
    # dataset -> a local file (jsonl / json / parquet / csv in one of the set's local
    # shapes), given as `data_file.<dataset> PATH`; a set without one comes from the hub.
    data_file: dict[str, str] = field(default_factory=dict)
    # <output_dir>/eval/<dataset>/ is written; None: the run's or the adapter's directory.
    output_dir: str | None = None
    # The first N problems of each set; None: all.
    max_samples: int | None = None
    # Prompts per generate call (hf backend).
    batch_size: int = 16
    # Tokens per completion; None: each set's own (its spec's max_new_tokens).
    max_new_tokens: int | None = None
    # None: the run's data.prompt_template, else the set's own (its spec's).
    prompt_template: TemplateName | None = None  # type: ignore[valid-type]
    # None: the run's data.system_prompt (none without a run).
    system_prompt: str | None = None
    # hf (transformers' generate) or vllm (the optional extra `vllm`).
    backend: Literal["hf", "vllm"] = "hf"
    # Save the completions every N problems (rounded up to a multiple of batch_size): a
    # re-run of the same command resumes from them. 256: MATH's 5,000 in 20 files; a 7B
    # model generates 256 MATH answers in minutes on one GPU, so an interruption costs little.
    save_every: int = 256
    # cpu, cuda, cuda:1, ...; None: accelerate's choice for this process.
    device: str | None = None
    # Graders recorded side by side, the first the primary (the top-level accuracy):
    # gpart (ours), official (the paper's rules), math-verify (uv sync --extra math-verify).
    graders: list[str] = field(default_factory=lambda: ["gpart", "official"])
    # Sort prompts by length (longest first) into batches; false keeps the dataset's order.
    sort: bool = True


KEYS = tuple(field_types(EvalConfig))
# Flags that spell a key (flag dest -> key), as `gpart.configs.cli.FLAG_KEYS`.
FLAG_KEYS = {
    "adapter_path": "adapter_path",
    "base_model": "base_model",
    "datasets": "datasets",
    "output_dir": "output_dir",
}
# What to write instead of a flag eval_math.py no longer takes, where it is not simply
# the key of the same name (those the generic message finds).
RENAMED_FLAGS = {
    "--model_path": "give the base model as --base_model MODEL",
    "--data_file": "give each set's file as the override `data_file.<dataset> PATH`",
    "--grader": "give the graders as the override `graders gpart,official`",
    "--no_sort": "give the override `sort false`",
    "--profile": "generation speed is measured by `python -m gpart.bench.generation` "
    "with the same arguments",
}


def _is_dataset(token: str) -> bool:
    return not token.startswith("-") and "." not in token and token not in KEYS


def build_eval_parser(prog: str = "eval_math.py") -> argparse.ArgumentParser:
    """The flags; `parse_eval_cli` reads the overrides after them."""
    parser = ConfigErrorParser(
        prog=prog,
        description="GSM8K / MATH / MATH-500 accuracy by greedy generation, of a trained run "
        "(--adapter_path) or a base model (--base_model).",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="overrides: after the flags, `key value` pairs, e.g.\n"
        "  data_file.gsm8k gsm8k_test.jsonl max_samples 100 batch_size 32 graders gpart,official\n"
        f"keys: {', '.join(k if k != 'data_file' else 'data_file.<dataset>' for k in KEYS)}\n"
        "--print_config shows every key with its value, and each set's prompt, token\n"
        "budget, data and output folder.",
    )
    parser.add_argument(
        "--adapter_path",
        help="a finetune_metamath.py run directory (base model and template from its config), "
        "its adapter/ folder, or any peft / GPart adapter folder",
    )
    parser.add_argument(
        "--base_model",
        help="the base model (hub id or directory); overrides the run's, or alone: no adapter",
    )
    parser.add_argument(
        "--dataset",
        dest="datasets",
        help=f"evaluation sets, space- or comma-separated: {', '.join(EVAL_TASKS)} "
        "(default: gsm8k math)",
    )
    parser.add_argument(
        "--output_dir",
        help="write <output_dir>/eval/<dataset>/ (default: the run's or adapter's directory)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="redo finished evaluations, and start interrupted ones over",
    )
    parser.add_argument(
        "--rescore",
        metavar="FILE",
        help="re-check a saved predictions.jsonl (no model) by `graders`; writes *.rescored.* "
        "beside it",
    )
    parser.add_argument(
        "--print_config",
        action="store_true",
        help="print the settings and what each set will be evaluated with, and exit",
    )
    return parser


def _set(cfg: EvalConfig, key: str, value: object, types: dict) -> None:
    if key.startswith("data_file."):
        dataset = key.removeprefix("data_file.")
        if dataset not in EVAL_TASKS:
            raise ConfigError(
                f"{key}: unknown dataset {dataset!r}{did_you_mean(dataset, EVAL_TASKS)} "
                f"(known: {', '.join(EVAL_TASKS)})"
            )
        cfg.data_file[dataset] = coerce(value, str, key)
        return
    if key not in types or key == "data_file":
        hint = " (data_file.<dataset> PATH)" if key == "data_file" else did_you_mean(key, KEYS)
        raise ConfigError(f"unknown key {key!r}{hint}; keys: {', '.join(KEYS)}")
    setattr(cfg, key, coerce(value, types[key], key))


def _check(cfg: EvalConfig) -> None:
    cfg.datasets = list(dict.fromkeys(cfg.datasets))
    for name in cfg.datasets:
        if name not in EVAL_TASKS:
            raise ConfigError(
                f"datasets: unknown dataset {name!r}{did_you_mean(name, EVAL_TASKS)} "
                f"(known: {', '.join(EVAL_TASKS)})"
            )
    extra = [d for d in cfg.data_file if d not in cfg.datasets]
    if extra:
        raise ConfigError(
            f"data_file.{extra[0]} is given but {extra[0]} is not evaluated "
            f"(datasets: {' '.join(cfg.datasets)}); add it to --dataset or drop the file"
        )
    for key in ("batch_size", "save_every", "max_new_tokens", "max_samples"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise ConfigError(f"{key} {value}: give 1 or more")


def parse_eval_cli(
    argv: Sequence[str] | None = None, *, prog: str = "eval_math.py"
) -> tuple[EvalConfig, argparse.Namespace]:
    """Parse flags then ``key value`` overrides into an `EvalConfig`.

    Returns:
        The config and the flags (``force``, ``rescore``, ``print_config``).

    Raises:
        ConfigError: an unknown flag or key (the message names the closest, or the new
            spelling of a flag eval_math.py no longer takes), a bad value, a key given both
            as its flag and as an override.
    """
    argv = join_multi_values(list(sys.argv[1:] if argv is None else argv),
                             {"--dataset": _is_dataset})  # fmt: skip
    parser = build_eval_parser(prog)
    flags, rest = parser.parse_known_args(argv)
    check_rest(argv, rest, parser, keys=KEYS, hints=RENAMED_FLAGS)
    pairs = split_overrides(rest)
    given = {k for k, _ in pairs}
    cfg, types = EvalConfig(), field_types(EvalConfig)
    for dest, key in FLAG_KEYS.items():
        value = getattr(flags, dest)
        if value is None:
            continue
        if key in given:
            flag = "--dataset" if dest == "datasets" else f"--{dest}"
            raise ConfigError(f"{key}: given both as {flag} and as an override; give it once")
        _set(cfg, key, value, types)
    for key, value in pairs:
        _set(cfg, key, value, types)
    _check(cfg)
    return cfg, flags


__all__ = ["BACKENDS", "EvalConfig", "build_eval_parser", "parse_eval_cli"]
