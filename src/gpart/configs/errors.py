"""`ConfigError`: the one exception type for user mistakes in an experiment configuration.

Runners turn it into a single ``error: <message>`` line on stderr and exit code 2 (see
`gpart.configs.cli.exit_on_config_error`), so every message is written to stand alone: it
names the key, says what was wrong and lists the valid keys or choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A user mistake in a configuration: unknown key, bad value, missing file, ...

    Subclasses `ValueError` so library callers that already catch `ValueError` keep working.
    """


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word` (case-insensitive), or None when nothing is close.

    Case-insensitive because the commonest typo is the case (``BF16`` for ``bf16``), which
    `difflib` alone scores as a poor match.
    """
    choices = list(choices)
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when some choice is close to `word`, else ``""``."""
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match else ""


def format_choices(choices: Iterable[str], limit: int = 60) -> str:
    """Comma-separated choices, cut after `limit` items so one line stays readable."""
    choices = list(choices)
    shown = ", ".join(choices[:limit])
    return shown + (f", ... ({len(choices) - limit} more)" if len(choices) > limit else "")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): enough to say
    why a model, tokenizer or dataset failed to load in a one-line error."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
