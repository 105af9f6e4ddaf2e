"""Loading dataset splits from a local directory, shared by every domain (GLUE, vision, math).

A local task directory holds either

* a ``datasets.save_to_disk`` folder of a ``DatasetDict`` (it has ``dataset_dict.json``), or
* one file per split, named ``<split>.<ext>`` with ``ext`` in ``csv``, ``jsonl``, ``json``
  (JSON Lines too) or ``parquet``.

Files are read with pyarrow straight into an in-memory ``Dataset``. Going through
``datasets.load_dataset("csv", ...)`` instead would write an Arrow cache under
``~/.cache/huggingface`` for every directory it sees, which is surprising for a user's data
folder and pointless for files that fit in memory.

Every problem a user can cause (missing directory, missing split, ambiguous files, missing
columns, nulls) raises :class:`DataError`, a ``ValueError`` whose message names the path and
what was expected, so command-line scripts can print it as one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, load_from_disk

from gpart.configs.errors import first_line

# File extension -> reader. ".json" is read as JSON Lines because that is what
# `Dataset.to_json` writes by default.
FILE_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}


class DataError(ValueError):
    """A dataset could not be loaded because of the user's data (path, split, columns)."""


def load_hub_dataset(
    source: str,
    subset: str | None = None,
    *,
    split: str | None = None,
    cache_dir: str | Path | None = None,
    offline_hint: str,
) -> Any:
    """`datasets.load_dataset` for every domain; an unreachable hub or unknown id becomes one
    `DataError` line: the first line of the cause, then `offline_hint` (how to run from local
    files)."""
    from datasets import load_dataset

    try:
        kwargs = {} if split is None else {"split": split}  # None: every split, as a dict
        return load_dataset(
            source, subset, cache_dir=None if cache_dir is None else str(cache_dir), **kwargs
        )
    except (ConnectionError, OSError, ValueError) as exc:
        name = source + (f"/{subset}" if subset else "")
        raise DataError(
            f"cannot load {name} from the hub ({first_line(exc)}); offline, {offline_hint}"
        ) from None


@dataclass
class Splits:
    """The three roles a task's data plays in a run, whatever the domain.

    Attributes:
        task: The task spec (`gpart.configs.tasks`).
        train: Examples the optimizer sees (train minus the selection split).
        selection: Held out of train for best-checkpoint selection / early stopping; ``None``
            with ``model_selection="last"``.
        test: The reported split(s) by split name (GLUE: its validation split(s)).
        info: Sizes and split parameters, for ``results.json["selection"]``.
    """

    task: Any
    train: Dataset
    selection: Dataset | None
    test: dict[str, Dataset]
    info: dict[str, Any] = field(default_factory=dict)


def _expected_layout(directory: Path, splits: Sequence[str]) -> str:
    exts = "|".join(e.lstrip(".") for e in FILE_FORMATS)
    names = ", ".join(f"{s}.{{{exts}}}" for s in splits)
    return (
        f"expected {directory} to hold a datasets.save_to_disk DatasetDict with splits "
        f"{list(splits)} or the files {names}"
    )


def find_split_file(directory: str | Path, split: str) -> Path:
    """Return the one file ``<directory>/<split>.<ext>`` with a supported extension.

    Raises:
        DataError: no such file, or several (e.g. ``train.csv`` and ``train.jsonl``): picking
            one silently could train on stale data.
    """
    directory = Path(directory)
    found = [directory / f"{split}{ext}" for ext in FILE_FORMATS]
    found = [p for p in found if p.is_file()]
    if not found:
        raise DataError(
            f"split '{split}' not found in {directory}: expected one of "
            + ", ".join(f"{split}{ext}" for ext in FILE_FORMATS)
        )
    if len(found) > 1:
        raise DataError(
            f"split '{split}' is ambiguous in {directory}: found {[p.name for p in found]}; "
            "keep exactly one file per split"
        )
    return found[0]


def _read_arrow_table(path: Path, string_columns: Iterable[str]) -> pa.Table:
    fmt = FILE_FORMATS.get(path.suffix.lower())
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            # Text columns are read as strings no matter what they look like ("1", "null",
            # "NaN" are valid sentences); quoted newlines are allowed inside values.
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in string_columns}
                ),
            )
        elif fmt == "json":
            import pyarrow.json as pajson

            table = pajson.read_json(path)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise DataError(
                f"unsupported file {path}: expected one of {sorted(set(FILE_FORMATS.values()))}"
            )
    except pa.ArrowException as err:  # malformed file: say which one
        raise DataError(f"could not read {path} as {fmt}: {err}") from err
    # JSON or parquet may carry numbers in a text column: make them strings too.
    for name in string_columns:
        if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
            idx = table.column_names.index(name)
            table = table.set_column(idx, name, pc.cast(table.column(name), pa.string()))
    return table


def read_split_file(
    path: str | Path, *, split: str | None = None, string_columns: Iterable[str] = ()
) -> Dataset:
    """Read one csv / jsonl / parquet file into an in-memory ``Dataset``.

    Args:
        path: The file.
        split: Split name recorded on the dataset.
        string_columns: Columns forced to ``string`` (text that may look like a number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    table = _read_arrow_table(path, list(string_columns))
    if table.num_rows == 0:
        raise DataError(f"data file {path} has no rows")
    return Dataset(table, split=split)


def load_local_splits(
    directory: str | Path,
    splits: Sequence[str],
    *,
    string_columns: Iterable[str] = (),
) -> DatasetDict:
    """Load ``splits`` from a local task directory (save_to_disk folder or split files).

    Only the requested splits are returned, so a saved ``DatasetDict`` that also holds e.g.
    an unlabeled ``test`` split is fine.

    Raises:
        DataError: missing directory, missing or ambiguous split, unreadable or empty file.
    """
    directory = Path(directory)
    string_columns = list(string_columns)
    if not directory.is_dir():
        raise DataError(
            f"data directory {directory} does not exist; {_expected_layout(directory, splits)}"
        )
    if (directory / "dataset_dict.json").is_file():
        try:
            loaded = load_from_disk(str(directory))
        except Exception as err:  # corrupt save_to_disk folder: report the path, keep the cause
            raise DataError(f"could not load the saved dataset in {directory}: {err}") from err
        missing = [s for s in splits if s not in loaded]
        if missing:
            raise DataError(
                f"saved dataset {directory} lacks split(s) {missing}; it has {list(loaded)}"
            )
        out = DatasetDict({s: loaded[s] for s in splits})
        for name, ds in out.items():
            if len(ds) == 0:
                raise DataError(f"split '{name}' of the saved dataset {directory} has no rows")
        return out
    if (directory / "dataset_info.json").is_file() or (directory / "state.json").is_file():
        raise DataError(
            f"{directory} holds a single saved Dataset; {_expected_layout(directory, splits)}"
        )
    return DatasetDict(
        {
            s: read_split_file(
                find_split_file(directory, s), split=s, string_columns=string_columns
            )
            for s in splits
        }
    )


def require_columns(dataset: Dataset, columns: Iterable[str], *, where: str) -> None:
    """Raise :class:`DataError` if ``dataset`` lacks any of ``columns`` or has nulls in them.

    Args:
        where: Names the dataset in the message (a path and split).
    """
    columns = list(columns)
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{where} lacks column(s) {missing}; expected {columns}, found {dataset.column_names}"
        )
    for c in columns:
        nulls = dataset.data.column(c).null_count
        if nulls:
            raise DataError(f"{where}: column '{c}' has {nulls} empty/null value(s)")


def loader_throughput(
    dataset: Any,
    collate_fn: Any,
    *,
    batch_size: int,
    num_workers: int,
    max_batches: int,
) -> dict[str, float]:
    """Examples per second of the input pipeline alone (decode, transform, collate).

    Iterates a shuffled `torch.utils.data.DataLoader` as `Trainer` builds it; the first batch
    (worker start-up) is not timed. Compare with the training step's examples per second
    (`python -m gpart.bench`) to see whether the loader keeps the accelerator busy.
    """
    import time

    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=False,
    )
    it = iter(loader)
    next(it)  # start-up: workers spawn, first files open
    start, seen, batches = time.perf_counter(), 0, 0
    for batch in it:
        seen += len(next(iter(batch.values())))
        batches += 1
        if batches >= max_batches:
            break
    seconds = time.perf_counter() - start
    if batches == 0:
        raise DataError("too few examples to time the loader: give more data or a smaller batch")
    return {"examples_per_s": seen / seconds, "batches": batches, "seconds": seconds}
