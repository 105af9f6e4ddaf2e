"""Where an evaluation's predictions live: ``<root>/eval/<dataset>/``.

A finished evaluation is ``predictions.jsonl`` (one record per problem, in the dataset's
order) and ``results.json`` (its marker), each written atomically (`write_outputs`). One
still under way is ``partial/`` (`PartialPredictions`): the completions generated so far,
so that a re-run of the same command resumes it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpart.configs.errors import ConfigError
from gpart.results.collect import EVAL_DIR
from gpart.results.io import read_json, write_json_atomic, write_text_atomic

PREDICTIONS, RESULTS = "predictions.jsonl", "results.json"
PARTIAL_DIR, PARTIAL_SETTINGS = "partial", "settings.json"


def dataset_dir(root: str | Path, dataset: str) -> Path:
    """``<root>/eval/<dataset>/``: where `dataset`'s evaluation of a run is written."""
    return Path(root) / EVAL_DIR / dataset


def items_digest(items: Sequence[Any]) -> str:
    """What the problems were: a digest of every (index, question, ground_truth)."""
    text = json.dumps([(it.index, it.question, it.ground_truth) for it in items])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_outputs(
    out: Path, records: list[dict[str, Any]], summary: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """``predictions.jsonl`` then ``results.json`` (the marker of a finished evaluation),
    each written atomically; returns what ``results.json`` holds."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_text_atomic(out / PREDICTIONS, lines)
    results = {**summary, **extra}
    write_json_atomic(out / RESULTS, results)
    return results


class PartialPredictions:
    """``<out>/partial/``: the completions of an evaluation still under way, so that a
    re-run of the same command resumes it.

    ``settings.json`` holds what decides the completions (model, adapter, prompt,
    decoding, batching, processes, the problems' digest, the chunk size); each chunk of
    generated problems is one ``chunk-<first position>.json`` (its rows, ``[position,
    completion, tokens]``, and its seconds), written atomically by the process that
    generated it, so an interruption loses at most the chunks in flight and never leaves
    a half-written one. A re-run with other settings is refused with one line naming
    what changed (``--force`` starts over); a finished evaluation removes the folder.
    """

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.root = out / PARTIAL_DIR
        self.settings = settings

    def check(self, dataset: str) -> None:
        """Refuse to resume chunks generated with other settings.

        Raises:
            ConfigError: ``settings.json`` differs (the message names every change).
        """
        path = self.root / PARTIAL_SETTINGS
        if not path.is_file():
            return
        before = read_json(path)
        changed = [
            f"{key} {before.get(key)!r} -> {value!r}"
            for key, value in self.settings.items()
            if before.get(key) != value
        ]
        if changed:
            raise ConfigError(
                f"{dataset}: {self.root} holds an interrupted evaluation with other settings "
                f"({'; '.join(changed)}); re-run it as it was to resume, or --force to start over"
            )

    def start(self) -> None:
        """Record the settings (the main process, before any chunk)."""
        if not (self.root / PARTIAL_SETTINGS).is_file():
            write_json_atomic(self.root / PARTIAL_SETTINGS, self.settings)

    def done(self) -> dict[int, tuple[str, int, float]]:
        """Every position generated so far: (completion, tokens, its share of its chunk's
        seconds)."""
        found: dict[int, tuple[str, int, float]] = {}
        for path in sorted(self.root.glob("chunk-*.json")) if self.root.is_dir() else []:
            chunk = read_json(path)
            share = chunk["seconds"] / max(len(chunk["rows"]), 1)
            for position, completion, tokens in chunk["rows"]:
                found[int(position)] = (completion, int(tokens), share)
        return found

    def save(self, rows: list[tuple[int, str, int]], seconds: float) -> None:
        """One chunk, atomically (called by the process that generated it)."""
        name = f"chunk-{min(r[0] for r in rows):07d}.json"
        write_json_atomic(self.root / name, {"rows": [list(r) for r in rows], "seconds": seconds})

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


__all__ = [
    "EVAL_DIR",
    "PREDICTIONS",
    "RESULTS",
    "PartialPredictions",
    "dataset_dir",
    "items_digest",
    "write_outputs",
]
