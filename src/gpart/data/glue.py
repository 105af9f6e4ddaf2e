"""GLUE: task specs, loading (hub or local), model-selection split, tokenisation, collation.

Protocol (as in the paper): the score we report is GLUE's *validation* split, which we call
``test`` because the model never sees it while training or selecting. Model selection (best
checkpoint, early stopping) uses a ``selection`` split carved from ``train``; with
``model_selection="last"`` nothing is carved out and the last checkpoint is reported.

Two carve-out rules (``data.selection_split``). ``"reference"`` is the paper authors' own
(:func:`carve_reference_selection_split`: datasets' stratified ``train_test_split`` of 15 %
on every GLUE task), which the GLUE presets use. ``"balanced"``'s size rule
(:func:`selection_split_size`): ``max(ceil(fraction * N), 300)``
examples with ``fraction`` in [0.15, 0.2], but never more than half of train, so that tiny
datasets (tests, smoke runs: N < 600) still keep at least half of their examples for
training. Every real GLUE task is large enough for the first part of the rule alone (RTE,
the smallest, has 2,490 training examples: 15 % is 374). The split is stratified by label
(proportions preserved, largest-remainder rounding per class) except for stsb (regression),
and seeded, so it is the same on every machine for the same seed.

Typical use in a runner::

    splits = load_glue_splits("rte", data_dir, model_selection="best", seed=seed)
    splits = tokenize_glue_splits(splits, tokenizer, max_seq_length=512)
    collator = glue_data_collator(tokenizer)
    # Trainer(train_dataset=splits.train, eval_dataset=splits.selection, ...)
    # for split, ds in splits.test.items(): trainer.evaluate(ds, metric_key_prefix="test")
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from gpart.configs.tasks import TextClassificationTask, get_task
from gpart.data.loading import (
    DataError,
    Splits,
    load_hub_dataset,
    load_local_splits,
    require_columns,
)

GLUE_HUB_ID = "nyu-mll/glue"
MODEL_SELECTION_CHOICES = ("best", "last")
SELECTION_FRACTION_RANGE = (0.15, 0.2)
MIN_SELECTION_EXAMPLES = 300


def _spec(task: str | TextClassificationTask) -> TextClassificationTask:
    """The task's spec (`gpart.configs.tasks.GLUE_TASKS`, the one place GLUE's metadata lives)."""
    return task if isinstance(task, TextClassificationTask) else get_task("glue", task)


# --------------------------------------------------------------------------------------------
# Loading


def _column_numpy(ds: Dataset, column: str) -> np.ndarray:
    """One column as a numpy array, straight from Arrow (no per-row Python objects)."""
    return np.asarray(ds.with_format("numpy", columns=[column])[:][column])


def _cast_label(ds: Dataset, feature: ClassLabel | Value) -> Dataset:
    """Cast ``label`` in memory: on a ``load_from_disk`` dataset, ``cast_column`` would write
    a cache file into the user's data directory."""
    features = ds.features.copy()
    features["label"] = feature
    return ds.cast(features, keep_in_memory=True)


def _normalise_labels(ds: Dataset, task: TextClassificationTask, where: str) -> Dataset:
    """Give ``label`` GLUE's feature type: ``ClassLabel`` (ids checked) or float32."""
    feature = ds.features["label"]
    if task.is_regression:
        if isinstance(feature, ClassLabel) or not (
            isinstance(feature, Value) and (feature.dtype.startswith(("float", "int")))
        ):
            raise DataError(f"{where}: 'label' must hold numbers for {task.name}, got {feature}")
        return _cast_label(ds, Value("float32"))
    if isinstance(feature, ClassLabel):
        if feature.num_classes != task.num_labels:
            raise DataError(
                f"{where}: 'label' has {feature.num_classes} classes, {task.name} has "
                f"{task.num_labels} {list(task.label_names)}"
            )
        labels = _column_numpy(ds, "label")
    elif isinstance(feature, Value) and feature.dtype == "string":
        # Label names ("entailment") are accepted as well as ids.
        index = {n: i for i, n in enumerate(task.label_names)}
        bad = sorted({v for v in ds.unique("label") if v not in index})
        if bad:
            raise DataError(
                f"{where}: unknown label name(s) {bad[:5]}; expected {list(task.label_names)}"
            )
        features = ds.features.copy()
        features["label"] = Value("int64")
        ds = ds.map(
            lambda b: {"label": [index[v] for v in b["label"]]},
            batched=True,
            keep_in_memory=True,
            features=features,
        )
        labels = _column_numpy(ds, "label")
    elif isinstance(feature, Value) and feature.dtype.startswith("int"):
        labels = _column_numpy(ds, "label")
    else:
        raise DataError(f"{where}: 'label' must be class ids or names, got {feature}")
    bad_ids = np.unique(labels[(labels < 0) | (labels >= task.num_labels)])
    if bad_ids.size:
        raise DataError(
            f"{where}: label id(s) {bad_ids[:5].tolist()} outside [0, {task.num_labels}) "
            f"(unlabeled GLUE test data cannot be used)"
        )
    if isinstance(feature, ClassLabel):
        return ds
    return _cast_label(ds, ClassLabel(names=list(task.label_names)))


def load_glue_raw(
    task: str | TextClassificationTask,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> DatasetDict:
    """Load train + the reported validation split(s) of a GLUE task, validated.

    Args:
        task: Task name or spec.
        data_dir: Offline root: ``<data_dir>/<task>/`` holds a ``save_to_disk`` DatasetDict or
            ``train`` / ``validation`` files (mnli: ``validation_matched`` and
            ``validation_mismatched``) in csv, jsonl or parquet with GLUE's column names.
            ``None`` downloads ``nyu-mll/glue`` from the hub.
        cache_dir: Hub download cache (online only).

    Returns:
        A ``DatasetDict`` with ``task.split_names``; ``label`` is a ``ClassLabel`` (or float32 for
        stsb); other columns are kept as they are.

    Raises:
        DataError: missing directory / split / columns, nulls, bad labels.
    """
    spec = _spec(task)
    if data_dir is None:
        loaded = load_hub_dataset(
            GLUE_HUB_ID,
            spec.name,
            cache_dir=cache_dir,
            offline_hint=f"pass --data_dir DIR with {spec.name}/train.jsonl (or csv/parquet, or "
            "a save_to_disk folder) and its validation split",
        )
        raw = DatasetDict({s: loaded[s] for s in spec.split_names})
        origin = f"{GLUE_HUB_ID}/{spec.name}"
    else:
        task_dir = Path(data_dir) / spec.name
        raw = load_local_splits(task_dir, spec.split_names, string_columns=spec.text_columns)
        origin = str(task_dir)
    out = {}
    for split, ds in raw.items():
        where = f"{origin} [{split}]"
        require_columns(ds, (*spec.text_columns, "label"), where=where)
        out[split] = _normalise_labels(ds, spec, where)
    return DatasetDict(out)


# --------------------------------------------------------------------------------------------
# Model-selection split


def selection_split_size(
    n: int,
    fraction: float = 0.2,
    min_examples: int = MIN_SELECTION_EXAMPLES,
) -> int:
    """Number of training examples carved out for model selection.

    ``max(ceil(fraction * n), min_examples)``, capped at ``n // 2`` so that training keeps at
    least half of a tiny dataset.

    Raises:
        ValueError: ``fraction`` outside [0.15, 0.2] (the paper's protocol).
        DataError: fewer than 2 training examples (nothing can be carved out).
    """
    lo, hi = SELECTION_FRACTION_RANGE
    if not lo <= fraction <= hi:
        raise ValueError(f"selection fraction must be in [{lo}, {hi}], got {fraction}")
    if min_examples < 1:
        raise ValueError(f"min_examples must be >= 1, got {min_examples}")
    if n < 2:
        raise DataError(f"cannot carve a selection split out of {n} training example(s)")
    # The small epsilon keeps float noise (0.15 * 2000 = 300.00000000000006) from adding one.
    wanted = max(math.ceil(fraction * n - 1e-9), min_examples)
    return min(wanted, n // 2)


def stratified_split_indices(
    labels: np.ndarray, n_select: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(labels)-1`` into (keep, select) with ``n_select`` selected.

    Each class gets ``n_select * n_c / n`` selected examples, rounded by largest remainder
    (ties: smaller class id first) so the total is exact; members of a class are chosen by a
    seeded permutation. Both outputs are sorted, so the training order stays the dataset's.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 < n_select < n:
        raise ValueError(f"n_select must be in (0, {n}), got {n_select}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_select * counts / n
    quota = np.floor(exact).astype(int)
    remainder = n_select - int(quota.sum())
    # Stable sort on the negated fractional part: largest first, ties by class order.
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:remainder]] += 1
    selected = []
    for cls, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == cls)
        selected.append(rng.permutation(members)[:q])
    select = np.sort(np.concatenate(selected))
    mask = np.ones(n, dtype=bool)
    mask[select] = False
    return np.flatnonzero(mask), select


def carve_selection_split(
    train: Dataset,
    *,
    fraction: float = 0.2,
    min_examples: int = MIN_SELECTION_EXAMPLES,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[Dataset, Dataset]:
    """Split ``train`` into (train, selection) by :func:`selection_split_size`, seeded.

    ``stratify`` uses the ``label`` column (classification); otherwise a plain seeded
    permutation picks the selection examples (regression).
    """
    n_select = selection_split_size(len(train), fraction, min_examples)
    if stratify:
        keep, select = stratified_split_indices(_column_numpy(train, "label"), n_select, seed)
    else:
        perm = np.random.default_rng(seed).permutation(len(train))
        select, keep = np.sort(perm[:n_select]), np.sort(perm[n_select:])
    return train.select(keep), train.select(select)


def reference_selection_fraction(n: int) -> float:
    """The reference's carve-out share: ``min(max(0.15, 300 / n), 0.2)`` (SamsungLabs/GPart
    at 320f0c1, ``utils/data_loader_utils.py::split_train_val``): 15 % on every GLUE task."""
    lo, hi = SELECTION_FRACTION_RANGE
    return min(max(lo, MIN_SELECTION_EXAMPLES / n), hi)


def carve_reference_selection_split(
    train: Dataset, *, seed: int, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Split ``train`` into (train, selection) with the reference's rule and library call.

    datasets' ``train_test_split`` with :func:`reference_selection_fraction`, the run's seed
    and ``stratify_by_column="label"`` (classification), so the members *and their order*
    are the reference's: both parts come out shuffled, and the data order is drawn over that
    order. Kept in memory: on a ``load_from_disk`` dataset the indices would otherwise be
    cached into the user's data directory.

    Raises:
        DataError: too few examples (or of one class) to stratify.
    """
    if len(train) < 2:
        raise DataError(f"cannot carve a selection split out of {len(train)} training example(s)")
    kwargs: dict[str, Any] = {"stratify_by_column": "label"} if stratify else {}
    try:
        parts = train.train_test_split(
            test_size=reference_selection_fraction(len(train)),
            seed=seed,
            keep_in_memory=True,
            **kwargs,
        )
    except ValueError as exc:  # e.g. a class with a single member cannot be stratified
        raise DataError(
            f"data.selection_split reference: datasets' train_test_split refused "
            f"{len(train)} training examples: {exc}"
        ) from None
    return parts["train"], parts["test"]


def load_glue_splits(
    task: str | TextClassificationTask,
    data_dir: str | Path | None = None,
    *,
    model_selection: Literal["best", "last"] = "best",
    selection_fraction: float = 0.2,
    min_selection_examples: int = MIN_SELECTION_EXAMPLES,
    seed: int = 0,
    max_train_samples: int | None = None,
    cache_dir: str | Path | None = None,
    selection_split: Literal["balanced", "reference"] = "balanced",
) -> Splits:
    """Load a GLUE task and assign its train / selection / test roles.

    Args:
        task: Task name or spec.
        data_dir: Offline root (see :func:`load_glue_raw`); ``None`` = hub.
        model_selection: ``"best"`` carves a selection split out of train; ``"last"`` does not.
        selection_fraction: Share of train for selection, in [0.15, 0.2].
        min_selection_examples: Floor of the selection size (300), capped at half of train.
        seed: Seed of the carve-out. Passing the run seed varies the split with the seed, so
            the spread over seeds includes the split's variance.
        max_train_samples: Keep only the first N training examples after the carve-out
            (debugging / smoke runs); ``None`` keeps all.
        cache_dir: Hub download cache.
        selection_split: ``"balanced"`` (:func:`carve_selection_split` with
            ``selection_fraction`` and ``min_selection_examples``) or ``"reference"``
            (:func:`carve_reference_selection_split`, which has its own size rule).
    """
    if selection_split not in ("balanced", "reference"):
        raise ValueError(
            f"selection_split must be 'balanced' or 'reference', got {selection_split!r}"
        )
    if model_selection not in MODEL_SELECTION_CHOICES:
        raise ValueError(
            f"model_selection must be one of {list(MODEL_SELECTION_CHOICES)}, got {model_selection!r}"
        )
    spec = _spec(task)
    raw = load_glue_raw(spec, data_dir, cache_dir=cache_dir)
    train = raw["train"]
    selection = None
    # Keys match results.json["selection"] (see gpart.results.schema), so a runner can spread
    # this dict into it and add the metric / best value / best step.
    info: dict[str, Any] = {"strategy": model_selection, "size": 0, "split_seed": seed}
    if model_selection == "best" and selection_split == "reference":
        fraction = reference_selection_fraction(len(train))
        train, selection = carve_reference_selection_split(
            train, seed=seed, stratify=not spec.is_regression
        )
        info.update(size=len(selection), fraction=fraction, rule="reference")
    elif model_selection == "best":
        train, selection = carve_selection_split(
            train,
            fraction=selection_fraction,
            min_examples=min_selection_examples,
            seed=seed,
            stratify=not spec.is_regression,
        )
        info.update(size=len(selection), fraction=selection_fraction)
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.select(range(max_train_samples))
    info["train_size"] = len(train)
    info["test_sizes"] = {s: len(raw[s]) for s in spec.test_split_names}
    return Splits(
        task=spec,
        train=train,
        selection=selection,
        test={s: raw[s] for s in spec.test_split_names},
        info=info,
    )


# --------------------------------------------------------------------------------------------
# Tokenisation and collation


def tokenize_glue(
    dataset: Dataset,
    task: str | TextClassificationTask,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 128,
    *,
    num_proc: int | None = None,
) -> Dataset:
    """Encode single sentences or sentence pairs; truncate to ``max_seq_length``, no padding.

    Returns a dataset with the tokenizer's outputs (``input_ids``, ``attention_mask``, and
    ``token_type_ids`` where the tokenizer makes them) and ``labels`` (int, or float for
    stsb); every original column is dropped. Padding is left to the collator (dynamic, per
    batch), which is much cheaper than padding every example to ``max_seq_length``.

    Results are kept in memory: ``map`` on a dataset loaded from a user's ``save_to_disk``
    folder would otherwise write cache files into that folder.
    """
    spec = _spec(task)
    if max_seq_length < 1:
        raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
    columns = spec.text_columns

    def encode(batch: Mapping[str, list]) -> dict[str, list]:
        texts = [batch[c] for c in columns]
        enc = tokenizer(*texts, truncation=True, max_length=max_seq_length)
        out = dict(enc)
        out["labels"] = batch["label"]
        return out

    return dataset.map(
        encode,
        batched=True,
        remove_columns=dataset.column_names,
        keep_in_memory=True,
        num_proc=num_proc,
        desc=f"tokenizing {spec.name}",
    )


def tokenize_glue_splits(
    splits: Splits,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 128,
    *,
    num_proc: int | None = None,
) -> Splits:
    """:func:`tokenize_glue` applied to every split of ``splits`` (a new object)."""

    def tok(ds: Dataset) -> Dataset:
        return tokenize_glue(ds, splits.task, tokenizer, max_seq_length, num_proc=num_proc)

    return replace(
        splits,
        train=tok(splits.train),
        selection=None if splits.selection is None else tok(splits.selection),
        test={name: tok(ds) for name, ds in splits.test.items()},
        info=dict(splits.info, max_seq_length=max_seq_length),
    )


def glue_data_collator(
    tokenizer: PreTrainedTokenizerBase, *, pad_to_multiple_of: int | None = None
) -> DataCollatorWithPadding:
    """Dynamic padding to the longest sequence in the batch.

    ``pad_to_multiple_of=8`` helps tensor cores under fp16/bf16.
    """
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
