"""A cheap fingerprint of the data a run trained and was evaluated on.

Run names leave the data's location out on purpose (moving the data must not rename a
sweep), so the name alone cannot tell that a finished run used *other* data: a new export,
a fixed label file, another ``--data_dir``. Each run records a fingerprint of its data in
``config.json`` (and its short digest in ``results.json``); a re-run compares it before
skipping a finished run.

* Local data (``<data_dir>/<task>/``): every file's path relative to the task folder, its
  size, and a SHA-256 of its content -- of the whole file up to `WHOLE_FILE_BYTES`, else of
  its first and last `EDGE_BYTES` (large files: the size and both ends catch re-exports
  and edits without reading gigabytes). Where the folder lives is recorded but not
  compared, so moved data still counts as the same data.
* Hub data: the dataset id and subset, and the fingerprint `datasets` gives each loaded
  split (derived from the cached files, so a new revision of the dataset changes it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WHOLE_FILE_BYTES = 2 * 1024 * 1024
EDGE_BYTES = 1024 * 1024
# Keys that describe where the data was, not what it was: shown, never compared.
_LOCATION_KEYS = ("root",)


def file_digest(path: Path) -> str:
    """SHA-256 of the whole file, or of its first and last `EDGE_BYTES` when it is large."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(EDGE_BYTES))
            f.seek(size - EDGE_BYTES)
            h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def local_fingerprint(root: str | Path) -> dict[str, Any]:
    """Every file below `root` (hidden ones aside): ``{relative path: {size, sha256}}``."""
    root = Path(root)
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # editor and atomic-write temporaries
        files[rel.as_posix()] = {"size": path.stat().st_size, "sha256": file_digest(path)}
    return {"kind": "local", "root": str(root.resolve()), "files": files}


def hub_fingerprint(
    source: str, subset: str | None, splits: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A hub dataset: its id, subset and, given the loaded splits, their `datasets`
    fingerprints."""
    out: dict[str, Any] = {"kind": "hub", "source": source, "subset": subset}
    if splits is not None:
        out["splits"] = {name: getattr(ds, "_fingerprint", None) for name, ds in splits.items()}
    return out


def _compared(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fingerprint.items() if k not in _LOCATION_KEYS}


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """12 hex digits identifying the data (its location aside), for ``results.json``."""
    text = json.dumps(_compared(fingerprint), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def same_data(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return _compared(old) == _compared(new)


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two fingerprints, in a few words (for a one-line error)."""
    where = _location(old), _location(new)
    if old.get("kind") != new.get("kind") or old.get("source") != new.get("source"):
        return f"the data source changed ({where[0]} -> {where[1]})"
    if old.get("kind") == "hub":
        return f"the hub dataset {where[1]} changed (another revision or cache)"
    before, after = old.get("files", {}), new.get("files", {})
    parts = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        if a is None:
            parts.append(f"{name} is new")
        elif b is None:
            parts.append(f"{name} is gone")
        elif a["size"] != b["size"]:
            parts.append(f"{name} changed ({a['size']} -> {b['size']} bytes)")
        else:
            parts.append(f"{name} changed (same size, other content)")
    moved = f" (was {where[0]}, now {where[1]})" if where[0] != where[1] else ""
    return ", ".join(parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "") + moved


def _location(fingerprint: Mapping[str, Any]) -> str:
    if fingerprint.get("kind") == "local":
        return str(fingerprint.get("root"))
    subset = fingerprint.get("subset")
    return f"hub {fingerprint.get('source')}" + (f"/{subset}" if subset else "")
