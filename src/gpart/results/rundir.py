"""Run names and run directories.

Layout: ``<output_dir>/<run-name>/<task>/seed_<seed>/``. The run name is shared by all tasks
and seeds of one sweep, so the collector can put them in one table row:
``<adapter_type>_<key><value>_..._<hash>``, e.g. ``gpart_d23000_lr0.01_3f9a1c2b``.

The hash is the identity (the readable part is a convenience and may be truncated): the
first hex digits of SHA-256 over the canonical JSON (sorted keys, no whitespace) of the
config it is given. What enters it -- the resolved config minus what varies within a sweep
(tasks, seed, output and data locations) -- is decided by the runners'
`gpart.runners.identity.sweep_identity`. Same config -> same name on any machine and Python
version; any other change -> new name, so two sweeps never share a directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpart.results.io import json_default

_MAX_NAME_LEN = 120  # well below the 255-byte filename limit, readable in `ls`
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def canonical_config_json(config: Mapping[str, Any]) -> str:
    """The exact string that is hashed: sorted keys, compact separators, ASCII."""
    return json.dumps(
        config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=json_default
    )


def config_hash(config: Mapping[str, Any], *, length: int = 8) -> str:
    """Short stable hash (hex) of a config dict."""
    if not 4 <= length <= 64:
        raise ValueError(f"hash length must be in [4, 64], got {length}")
    text = canonical_config_json(config)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:length]


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(_format_value(v) for v in value)
    return str(value)


def run_name(
    adapter_type: str,
    key_hparams: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    hash_length: int = 8,
) -> str:
    """``<adapter_type>_<key><value>..._<hash>``, filesystem-safe.

    Args:
        adapter_type: Leads the name (``gpart``, ``lora``, ``full``).
        key_hparams: The few values worth reading in a directory listing, in display order
            (e.g. ``{"d": 23000, "lr": 0.01}``); they do not enter the hash by themselves.
        config: What identifies the sweep (`sweep_identity`); its hash ends the name.
    """
    if not adapter_type:
        raise ValueError("adapter_type must be a non-empty string")
    parts = [adapter_type] + [f"{k}{_format_value(v)}" for k, v in key_hparams.items()]
    readable = _UNSAFE.sub("-", "_".join(parts))
    readable = readable[:_MAX_NAME_LEN].rstrip("_-")
    return f"{readable}_{config_hash(config, length=hash_length)}"


def run_dir(output_dir: str | Path, name: str, task: str, seed: int) -> Path:
    """``<output_dir>/<name>/<task>/seed_<seed>`` (not created)."""
    for label, part in (("run name", name), ("task", task)):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise ValueError(f"invalid {label} for a directory name: {part!r}")
    return Path(output_dir) / name / task / f"seed_{int(seed)}"


def parse_run_dir(path: str | Path) -> tuple[str, str, int]:
    """Inverse of :func:`run_dir`: ``(run name, task, seed)`` from a seed directory.

    Raises:
        ValueError: the path does not end in ``<name>/<task>/seed_<int>``.
    """
    path = Path(path)
    m = re.fullmatch(r"seed_(-?\d+)", path.name)
    if m is None or len(path.parts) < 3:
        raise ValueError(f"{path} is not a run directory <run-name>/<task>/seed_<seed>")
    return path.parent.parent.name, path.parent.name, int(m.group(1))
