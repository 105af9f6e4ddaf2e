"""Datasets: load from the hub or a local directory, tokenise, collate.

Submodules: :mod:`gpart.data.loading` (local split files shared by every domain, `DataError`)
and :mod:`gpart.data.glue` (GLUE task specs, model-selection split, tokenisation).
"""

from gpart.data.glue import (
    DEFAULT_GLUE_TASKS,
    GLUE_TASKS,
    GlueSplits,
    GlueTask,
    get_glue_task,
    glue_data_collator,
    load_glue_raw,
    load_glue_splits,
    tokenize_glue,
    tokenize_glue_splits,
)
from gpart.data.loading import DataError, load_local_splits

__all__ = [
    "DEFAULT_GLUE_TASKS",
    "GLUE_TASKS",
    "DataError",
    "GlueSplits",
    "GlueTask",
    "get_glue_task",
    "glue_data_collator",
    "load_glue_raw",
    "load_glue_splits",
    "load_local_splits",
    "tokenize_glue",
    "tokenize_glue_splits",
]
