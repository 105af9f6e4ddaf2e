"""The one exception a user mistake raises: the CLI prints it as one line and exits 2."""

from __future__ import annotations


class BenchError(Exception):
    """A bad flag or input of the benchmark (reported without a traceback)."""
