"""Crash-safe result files: atomic JSON/text writes and append-only JSON Lines.

A reader (the collector, a resumed run) must never see half a ``results.json``: we write a
temporary file in the same directory, flush it to disk, then ``os.replace`` it over the
target, which is atomic on POSIX and Windows within one filesystem. A crash leaves either the
old file or none, plus at worst a hidden ``.<name>.*.tmp`` that is removed when the write
fails inside Python.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for what results contain besides plain types: numpy and
    torch scalars/arrays, paths, enums, sets, dataclasses."""
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()  # numpy / torch scalar
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()  # numpy / torch array
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same directory, then rename).

    The parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` (keys sorted, for diffable files) and write it atomically.

    Serialisation happens before anything touches the disk, so an unserialisable object
    leaves no file behind.
    """
    text = json.dumps(obj, indent=indent, sort_keys=True, default=json_default) + "\n"
    return write_text_atomic(path, text)


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line (compact JSON) and flush it to disk.

    A crash can at worst truncate the last line, which :func:`read_jsonl` skips.
    """
    line = json.dumps(dict(record), sort_keys=True, default=json_default)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[Any]:
    """All records of a JSON Lines file; a truncated final line (crash) is ignored.

    Raises:
        ValueError: a malformed line that is not the last one (real corruption).
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON: {err}") from err
    return records


def is_finite_number(value: Any) -> bool:
    """True for int/float values that are not NaN/inf (bool excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
