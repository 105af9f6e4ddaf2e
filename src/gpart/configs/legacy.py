"""Run identity versions: the current one, and the frozen record of the older ones.

A run directory's name hashes its sweep's identity (`gpart.runners.identity`), so a key's
name is part of every run name. The identity carries `IDENTITY_VERSION`; a change that
renames what is hashed (a key, a section) bumps it and records here how the previous
version spelled things, so that runs written before are still found by name (skip,
resume) and their saved config.json files still load.

Version 1 hashed no version number and this project's own adapter keys, which differed
from the peft config fields they were bridged to (``adapter.grouping`` for
`GPartConfig.grouping_strategy`, ``adapter.alpha`` for `LoraConfig.lora_alpha`, ...).
Version 2 hashes ``identity_version: 2`` and the adapter keys as peft's fields are named.
`V1_RENAMED` is the one table between the two: it computes the version-1 names, reads
version-1 config.json files and explains an old key given on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IDENTITY_VERSION = 2

_LORA = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
# Version 1's adapter keys per adapter type -> today's key (peft's field name); None: the
# key is gone (peft's config has no such field; version 1 only accepted its default,
# `V1_REMOVED_VALUE`, which every version-1 identity of that adapter hashed).
V1_RENAMED: dict[str, dict[str, str | None]] = {
    "gpart": {
        "dropout": "gpart_dropout",
        "grouping": "grouping_strategy",
        "assignment": "assignment_backend",
        "projection": "projection_type",
    },
    "lora": _LORA,
    "dora": _LORA,
    "unilora": {
        "dropout": "unilora_dropout",
        "d": "theta_d_length",
        "init_bound": "init_theta_d_bound",
    },
    "vera": {"dropout": "vera_dropout"},
    "vblora": {"dropout": "vblora_dropout"},
    "fourierft": {"dropout": None},
    "bitfit": {"dropout": None},
    "head": {"dropout": None},
    "full": {"dropout": None},
}
V1_REMOVED_VALUE = 0.0
# The readable part of a version-1 name: the first of these adapter keys present, in order.
V1_NAME_KEYS = ("d", "r", "theta_d_length")


def to_v1_adapter(adapter_type: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """An adapter section (today's keys) as version 1 spelled it."""
    renames = V1_RENAMED.get(adapter_type, {})
    back = {new: old for old, new in renames.items() if new is not None}
    out = {back.get(k, k): v for k, v in section.items()}
    out.update({old: V1_REMOVED_VALUE for old, new in renames.items() if new is None})
    return out


def v1_adapter_key(adapter_type: str, key: str) -> str | None:
    """Today's name of adapter key `key` (itself unless version 1 spelled it so); None:
    the key is gone."""
    return V1_RENAMED.get(adapter_type, {}).get(key, key)


def from_v1_adapter(adapter_type: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """An adapter section saved under version 1, with today's keys (gone keys dropped)."""
    out: dict[str, Any] = {}
    for key, value in section.items():
        new = v1_adapter_key(adapter_type, key)
        if new is not None:
            out[new] = value
    return out


def renamed_key_message(adapter_type: str, key: str, peft_class: str | None) -> str | None:
    """The error for version 1's adapter key `key` given today, or None if it is not one."""
    renames = V1_RENAMED.get(adapter_type, {})
    if key not in renames:
        return None
    new = renames[key]
    if new is None:
        return f"adapter.{key} was removed: adapter {adapter_type!r} has no such option"
    where = f" (peft's {peft_class} field)" if peft_class else ""
    return f"adapter.{key} was renamed adapter.{new}{where}"
