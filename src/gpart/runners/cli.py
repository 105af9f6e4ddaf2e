"""A runner's whole command line: parse, the two actions, then run.

Above the configs layer on purpose: `cli_main` *runs* things (`--compute_params_only` builds
models, a runner trains), while `gpart.configs.cli` only turns arguments into a config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gpart.configs import ExperimentConfig, build_parser, exit_on_config_error, parse_cli
from gpart.results.rundir import config_hash
from gpart.runners.export import EXPORT_DTYPES
from gpart.runners.identity import sweep_identity


def build_runner_parser(domain: str, *, prog: str, description: str) -> argparse.ArgumentParser:
    """The shared parser plus what every training runner adds: ``--resume`` and ``--force``."""
    parser = build_parser(domain, prog=prog, description=description, require_adapter=True)
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted runs from their last checkpoint"
    )
    parser.add_argument(
        "--force", action="store_true", help="re-run finished runs (their directory is replaced)"
    )
    parser.add_argument(
        "--export_merged",
        metavar="DIR",
        help="after each run (trained now or already finished), save the adapter merged into "
        "the base model as a plain transformers model: DIR for one run, "
        "DIR/<task>/seed_<seed>/ for several",
    )
    parser.add_argument(
        "--export_dtype",
        choices=EXPORT_DTYPES,
        default="bf16",
        help="dtype of the --export_merged weights (default bf16; the merge itself is fp32)",
    )
    return parser


def params_path(cfg: ExperimentConfig) -> Path:
    """Where ``--compute_params_only`` writes: ``<output_dir>/params_<adapter>_<size>_<hash>.json``.

    The hash is the sweep's identity plus the tasks counted, so another setting or task list
    never overwrites an earlier file.
    """
    digest = config_hash({**sweep_identity(cfg), "tasks": list(cfg.tasks)})
    return Path(cfg.output_dir) / f"params_{cfg.adapter.type}_{cfg.model.model_size}_{digest}.json"


def cli_main(
    run: Callable[[ExperimentConfig, argparse.Namespace], Any],
    argv: Sequence[str] | None = None,
    *,
    domain: str = "glue",
    parser: argparse.ArgumentParser | None = None,
    model_config: Any = None,
) -> int:
    """Parse, handle the actions, then return ``run(cfg, flags)`` (None counts as 0).

    ``--print_config`` prints `cfg.to_json()` and returns 0; ``--compute_params_only``
    prints the parameter breakdown, saves it (`params_path`) and returns 0. A
    `ConfigError` anywhere (also inside `run`) exits with status 2 and one ``error:`` line.

    Typical runner::

        def main(argv=None):
            return cli_main(functools.partial(run_sweep, GLUE), argv, domain="glue")
    """
    with exit_on_config_error():
        cfg, flags = parse_cli(argv, domain=domain, parser=parser)
        if flags.print_config:
            print(cfg.to_json())
            if len(flags.seeds) > 1:
                others = ", ".join(str(s) for s in flags.seeds[1:])
                print(
                    f"(printed for seed {flags.seeds[0]}; seeds {others} differ only in `seed` "
                    "and the fields that follow it)",
                    file=sys.stderr,
                )
            return 0
        if flags.compute_params_only:
            from gpart.params import compute_params_only

            compute_params_only(cfg, out_path=params_path(cfg), model_config=model_config)
            return 0
        result = run(cfg, flags)
        return 0 if result is None else int(result)
