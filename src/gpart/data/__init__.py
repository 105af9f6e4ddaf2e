"""Datasets: load from the hub or a local directory, split, tokenise, collate.

Submodules: :mod:`gpart.data.loading` (local split files and the `Splits` roles shared by
every domain, `DataError`) and :mod:`gpart.data.glue` (GLUE loading, model-selection split,
tokenisation). Task metadata (columns, labels, metrics) lives in `gpart.configs.tasks`.
"""

from gpart.data.glue import (
    glue_data_collator,
    load_glue_raw,
    load_glue_splits,
    tokenize_glue,
    tokenize_glue_splits,
)
from gpart.data.loading import DataError, Splits, load_local_splits

__all__ = [
    "DataError",
    "Splits",
    "glue_data_collator",
    "load_glue_raw",
    "load_glue_splits",
    "load_local_splits",
    "tokenize_glue",
    "tokenize_glue_splits",
]
