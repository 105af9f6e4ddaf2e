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
* Large folders (more than `MAX_LISTED_FILES` files, e.g. an image folder with a file per
  image): reading every image on each re-run and listing a million files in
  ``config.json`` would cost more than the run it guards. Such a folder is summarised by
  its file count, total bytes, a SHA-256 of the sorted ``path<TAB>size`` listing (any file
  added, removed, renamed or resized changes it), and the content digests of a fixed
  sample of `SAMPLED_FILES` files (the ones whose path hashes lowest, so the sample does
  not depend on where the folder lives). An in-place edit that keeps every size and
  misses the sample goes unseen: the same trade-off as hashing the ends of large files.
  A full listing recorded by an older version is summarised the same way before
  comparing, so existing runs are still recognised.
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
# Above this many files a folder is summarised (see the module docstring): GLUE/csv
# folders hold a handful of files, image folders thousands to millions.
MAX_LISTED_FILES = 1000
SAMPLED_FILES = 64
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
    """Every file below `root` (hidden ones aside): ``{relative path: {size, sha256}}``, or
    for a folder of more than `MAX_LISTED_FILES` files its `summary` (only the sampled files
    are read)."""
    root = Path(root)
    sizes: dict[str, int] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # editor and atomic-write temporaries
        sizes[rel.as_posix()] = path.stat().st_size
    out: dict[str, Any] = {"kind": "local", "root": str(root.resolve())}
    if len(sizes) <= MAX_LISTED_FILES:
        out["files"] = {
            name: {"size": size, "sha256": file_digest(root / name)} for name, size in sizes.items()
        }
        return out
    sample = {
        name: {"size": sizes[name], "sha256": file_digest(root / name)} for name in _sample(sizes)
    }
    out["summary"] = _summary(sizes, sample)
    return out


def _path_rank(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _sample(names: Mapping[str, Any]) -> list[str]:
    """The `SAMPLED_FILES` paths whose hash is lowest: fixed for a given listing."""
    return sorted(sorted(names, key=_path_rank)[:SAMPLED_FILES])


def _summary(sizes: Mapping[str, int], sample: Mapping[str, Any]) -> dict[str, Any]:
    listing = "".join(f"{name}\t{sizes[name]}\n" for name in sorted(sizes))
    return {
        "files": len(sizes),
        "bytes": sum(sizes.values()),
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "sample": dict(sample),
    }


def _summarised(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A local fingerprint in the form its file count calls for (an old full listing of a
    large folder becomes its summary; everything else is returned as it is)."""
    files = fingerprint.get("files")
    if fingerprint.get("kind") != "local" or files is None or len(files) <= MAX_LISTED_FILES:
        return dict(fingerprint)
    sizes = {name: entry["size"] for name, entry in files.items()}
    out = {k: v for k, v in fingerprint.items() if k != "files"}
    out["summary"] = _summary(sizes, {name: files[name] for name in _sample(sizes)})
    return out


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
    return {k: v for k, v in _summarised(fingerprint).items() if k not in _LOCATION_KEYS}


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
    old, new = _summarised(old), _summarised(new)
    moved = f" (was {where[0]}, now {where[1]})" if where[0] != where[1] else ""
    if "summary" in old or "summary" in new:
        return _describe_summary(old, new) + moved
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
    return ", ".join(parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "") + moved


def _describe_summary(old_fp: Mapping[str, Any], new_fp: Mapping[str, Any]) -> str:
    old, new = old_fp.get("summary"), new_fp.get("summary")
    if old is None or new is None:
        n_old = old["files"] if old else len(old_fp.get("files", {}))
        n_new = new["files"] if new else len(new_fp.get("files", {}))
        return f"the folder went from {n_old} to {n_new} files"
    if (old["files"], old["bytes"]) != (new["files"], new["bytes"]):
        return (
            f"the folder changed ({old['files']} files, {old['bytes']} bytes -> "
            f"{new['files']} files, {new['bytes']} bytes)"
        )
    if old["listing_sha256"] != new["listing_sha256"]:
        return "files were renamed or resized (same count and total size)"
    changed = sorted(n for n in old["sample"] if old["sample"][n] != new["sample"].get(n))
    return f"{changed[0] if changed else 'a sampled file'} changed (same size, other content)"


def _location(fingerprint: Mapping[str, Any]) -> str:
    if fingerprint.get("kind") == "local":
        return str(fingerprint.get("root"))
    subset = fingerprint.get("subset")
    return f"hub {fingerprint.get('source')}" + (f"/{subset}" if subset else "")
