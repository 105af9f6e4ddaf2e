"""Command line shared by the runners: flags first, then ``key value`` overrides.

    python src/scripts/glue/finetune_roberta_glue.py --adapter_type gpart --tasks sst2 rte --seed 1 2 \\
        adapter.d 16384 adapter.isometric false training.lr 1e-3 task.rte.epochs 3

Flags choose presets (``--adapter_type``, ``--tasks``, ``--model_size``) and actions
(``--print_config``, ``--compute_params_only``); ``--seed``, ``--output_dir``,
``--data_dir`` and ``--base_model`` are spellings of the keys ``seed``, ``output_dir``,
``data.data_dir`` and ``model.base_model``. Everything after the flags is overrides.

Any mistake raises `ConfigError`; `exit_on_config_error` prints it as one ``error: ...``
line and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence

from gpart.configs.errors import ConfigError, did_you_mean
from gpart.configs.presets import get_presets
from gpart.configs.registry import adapter_names, get_adapter
from gpart.configs.resolve import resolve_experiment
from gpart.configs.schema import ExperimentConfig
from gpart.configs.tasks import get_domain

# Flags that are another spelling of a config key (flag dest -> key).
FLAG_KEYS = {
    "seed": "seed",
    "output_dir": "output_dir",
    "data_dir": "data.data_dir",
    "base_model": "model.base_model",
}
# A token that argparse would read as a flag: "-x" or "--x", but not a negative number.
_FLAG_RE = re.compile(r"^--?[A-Za-z_]")


class ConfigErrorParser(argparse.ArgumentParser):
    """argparse that raises `ConfigError` instead of printing usage and exiting.

    So flag errors come out as the same single line as override errors.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        if "required: --adapter_type" in message:
            message += f" (choices: {', '.join(adapter_names())})"
        raise ConfigError(message)


def _choice(flag: str, choices: Sequence[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice {value!r}{did_you_mean(value, choices)}; "
                f"choices: {', '.join(choices)}"
            )
        return value

    check.__name__ = flag  # argparse names the type in some messages
    return check


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers, got {text!r}") from None


# Flags that take several values (`--tasks sst2 rte`, `--seed 1 2 3`). argparse's nargs="+"
# would also swallow the `key value` overrides that follow, so the values are joined with
# commas before parsing: a value is a token that cannot start an override.
def _could_be_task(tok: str) -> bool:
    # override keys have a dot (`training.lr`) or are top-level keys
    return not tok.startswith("-") and "." not in tok and tok not in ("seed", "output_dir")


MULTI_VALUE_FLAGS = {
    "--tasks": _could_be_task,
    "--task": _could_be_task,
    "--dataset": _could_be_task,
    "--seed": lambda tok: re.fullmatch(r"-?\d+(,-?\d+)*", tok) is not None,
}


def join_multi_values(
    argv: Sequence[str], flags: Mapping[str, Callable[[str], bool]] = MULTI_VALUE_FLAGS
) -> list[str]:
    """``--seed 1 2 --tasks a b k v`` -> ``--seed 1,2 --tasks a,b k v``; `flags` maps each
    several-valued flag to what may be one of its values."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        out.append(tok)
        i += 1
        is_value = flags.get(tok)
        if is_value is None:
            continue
        values = []
        # the first token is the flag's value whatever it is (argparse then validates it)
        while i < len(argv) and (not values or is_value(argv[i])):
            values.append(argv[i])
            i += 1
        if values:
            out.append(",".join(values))
    return out


def build_parser(
    domain: str = "glue",
    *,
    prog: str | None = None,
    description: str | None = None,
    require_adapter: bool = False,
) -> argparse.ArgumentParser:
    """The runners' shared parser. Runners may add their own flags before `parse_cli`.

    ``--adapter_type`` choices come from the adapter registry and ``--model_size`` choices
    from the domain's presets, so a new adapter or size shows up without edits here.
    Runners pass `require_adapter=True`: which method ran is never left to a default there.
    """
    dom = get_domain(domain)
    presets = get_presets(domain)
    adapters = adapter_names()
    parser = ConfigErrorParser(
        prog=prog,
        description=description or f"gpart {domain} runner",
        allow_abbrev=False,  # --adapter must not silently mean --adapter_type
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "overrides: after the flags, `key value` pairs, e.g.\n"
            "  adapter.d 16384 adapter.isometric false training.lr 1e-3 task.sst2.epochs 3\n"
            "keys: seed, output_dir, model.*, adapter.* (per --adapter_type), training.*,\n"
            "  data.*, task.* (every task), task.<task>.* (one task).\n"
            "precedence: defaults < adapter preset < task preset < size preset < command line.\n"
            "--print_config shows every key with its value and source."
        ),
    )
    parser.add_argument(
        "--adapter_type",
        default=None if require_adapter else "gpart",
        required=require_adapter,
        type=_choice("adapter_type", adapters),
        choices=adapters,
        help="adapter (required)" if require_adapter else "adapter (default: gpart)",
    )
    parser.add_argument(
        "--tasks",
        "--task",
        *(["--dataset"] if domain == "vision" else []),  # the ViT reference's flag
        dest="tasks",
        default=None,
        help=f"tasks (space- or comma-separated) or 'all'; choices: {', '.join(dom.tasks)} "
        f"(default: {' '.join(dom.default_tasks)})",
    )
    parser.add_argument(
        "--model_size",
        default=presets.default_size,
        type=_choice("model_size", presets.sizes()),
        choices=presets.sizes(),
        help=f"size preset (default: {presets.default_size})",
    )
    parser.add_argument(
        "--seed",
        type=_seed_list,
        default=None,
        help="run seed(s), space- or comma-separated; several run one after another (default: 42)",
    )
    parser.add_argument("--output_dir", default=None, help="root of run directories")
    parser.add_argument("--data_dir", default=None, help="local datasets (offline)")
    parser.add_argument("--base_model", default=None, help="hub id or local model path")
    parser.add_argument(
        "--print_config", action="store_true", help="print the resolved config as JSON and exit"
    )
    parser.add_argument(
        "--compute_params_only",
        action="store_true",
        help="build the model from its config only, print and save the parameter breakdown",
    )
    return parser


def split_overrides(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """``["a.b", "1", "c.d", "x"]`` -> ``[("a.b", "1"), ("c.d", "x")]``, or `ConfigError`."""
    for i in range(0, len(tokens), 2):
        key = tokens[i]
        if _FLAG_RE.match(key):
            raise ConfigError(f"unknown flag {key}")
        if "=" in key:
            k, _, v = key.partition("=")
            raise ConfigError(f"{key!r}: write overrides as `key value`, e.g. `{k} {v}`")
    if len(tokens) % 2:
        raise ConfigError(
            f"overrides must be `key value` pairs; {tokens[-1]!r} has no value "
            f"({len(tokens)} tokens)"
        )
    return [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens), 2)]


def _unknown_flag_message(
    flag: str,
    parser: argparse.ArgumentParser,
    keys: Sequence[str] | None = None,
    hints: Mapping[str, str] | None = None,
) -> str:
    """What an unknown flag probably meant: `hints` (flag -> what to write instead) first,
    then an override key it spells (of `keys`; None: the training runners'), then the
    closest flag."""
    name = flag.split("=", 1)[0]
    known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    if hints and name in hints:
        return f"unknown flag {name}; {hints[name]}"
    bare = name.lstrip("-")
    keys = _all_override_fields() if keys is None else keys
    # `--lr` / `--training.lr` are usually meant as the override `training.lr`: an exact
    # match on a key or a field name says more than the closest flag would.
    exact = [k for k in keys if bare in (k, k.replace(".", "_"), k.rsplit(".", 1)[-1])]
    if exact:
        hint = f"; did you mean the override `{exact[0]} VALUE`?"
    else:
        hint = did_you_mean(name, known)
    return f"unknown flag {name}{hint}; flags: {', '.join(known)}"


def _all_override_fields() -> list[str]:
    from gpart.configs.schema import (
        DataConfig,
        ModelConfig,
        TrainingConfig,
        field_types,
    )

    out = []
    for section, cls in (
        ("training", TrainingConfig),
        ("data", DataConfig),
        ("model", ModelConfig),
    ):
        out += [f"{section}.{f}" for f in field_types(cls)]
    for name in adapter_names():
        out += [f"adapter.{f}" for f in field_types(get_adapter(name).config_cls)]
    return list(dict.fromkeys(out))


def parse_cli(
    argv: Sequence[str] | None = None,
    *,
    domain: str = "glue",
    parser: argparse.ArgumentParser | None = None,
) -> tuple[ExperimentConfig, argparse.Namespace]:
    """Parse flags then ``key value`` overrides and resolve the experiment.

    Args:
        argv: arguments without the program name; None: ``sys.argv[1:]``.
        domain: the runner's domain (``glue``, ``vision``, ``math``).
        parser: a parser from `build_parser(domain)`, possibly with runner-specific flags.

    Returns the resolved `ExperimentConfig` and the parsed flags (``flags.print_config``,
    ``flags.compute_params_only`` and any runner flags). Raises `ConfigError` for every
    user mistake; it does not print or exit (see `exit_on_config_error`, `gpart.runners.cli.cli_main`).
    """
    argv = join_multi_values(list(sys.argv[1:] if argv is None else argv))
    parser = parser or build_parser(domain)
    flags, rest = parser.parse_known_args(argv)
    check_rest(argv, rest, parser)
    pairs = split_overrides(rest)
    seeds = list(dict.fromkeys(flags.seed)) if flags.seed else None
    flag_values = {**vars(flags), "seed": seeds[0] if seeds else None}
    flag_pairs = [
        (key, flag_values[dest])
        for dest, key in FLAG_KEYS.items()
        if flag_values.get(dest) is not None
    ]
    given = {k for k, _ in pairs}
    for key, _ in flag_pairs:
        if key in given:
            flag = next(f"--{d}" for d, k in FLAG_KEYS.items() if k == key)
            raise ConfigError(f"{key}: given both as {flag} and as an override; give it once")
    inputs = {
        "domain": domain,
        "adapter": flags.adapter_type,
        "tasks": _flatten_tasks(flags.tasks),
        "model_size": flags.model_size,
        "overrides": flag_pairs + pairs,
    }
    cfg = resolve_experiment(**inputs)
    # Several seeds: the runner resolves each with `configs_for_seeds` (seed-following
    # fields such as GPart's proj_seed then follow each seed).
    flags.seeds = seeds or [cfg.seed]
    flags.resolve_inputs = inputs
    return cfg, flags


def _flatten_tasks(tasks: str | None) -> list[str] | None:
    if tasks is None:
        return None
    return [t.strip() for t in tasks.split(",") if t.strip()]


def configs_for_seeds(flags: argparse.Namespace) -> list[ExperimentConfig]:
    """One resolved config per ``--seed`` value, from the inputs `parse_cli` recorded."""
    inputs = flags.resolve_inputs
    out = []
    for seed in flags.seeds:
        overrides = [(k, v) for k, v in inputs["overrides"] if k != "seed"] + [("seed", seed)]
        out.append(resolve_experiment(**{**inputs, "overrides": overrides}))
    return out


def check_rest(
    argv: list[str],
    rest: list[str],
    parser: argparse.ArgumentParser,
    keys: Sequence[str] | None = None,
    hints: Mapping[str, str] | None = None,
) -> None:
    """Overrides must be the tail of argv and hold no flag-like key; explain otherwise
    (an unknown flag: `_unknown_flag_message` with `keys` and `hints`)."""
    for i in range(0, len(rest), 2):  # keys sit at even positions; values may be "-0.1"
        if _FLAG_RE.match(rest[i]):
            # A known flag cannot be in `rest`, so this is unknown, or known but misplaced
            # (argparse would have parsed a known flag wherever it stood).
            raise ConfigError(_unknown_flag_message(rest[i], parser, keys, hints))
    if not rest or argv[len(argv) - len(rest) :] == rest:
        return
    # argparse also parses known flags placed among the overrides; refuse it, because a
    # value that happens to look like a flag would otherwise be misread silently.
    start = argv.index(rest[0])
    misplaced = next((t for t in argv[start:] if _FLAG_RE.match(t) and t not in rest), "a flag")
    raise ConfigError(
        f"flag {misplaced} comes after the `key value` overrides (which start at "
        f"{rest[0]!r}); put every flag before the overrides"
    )


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a `ConfigError` into ``error: <message>`` on stderr and exit status 2.

    Usable as ``with exit_on_config_error(): ...`` or as a decorator
    ``@exit_on_config_error()``. No traceback: these are user mistakes, not bugs.
    """
    try:
        yield
    except ConfigError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
