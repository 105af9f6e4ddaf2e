"""The ``results.json`` schema: what a finished run writes and the collector reads.

One file per run directory ``<output_dir>/<run-name>/<task>/seed_<seed>/results.json``,
written atomically at the very end of a run (so its presence means "finished"). Build it
with :func:`build_results`, which validates it; metric values are raw fractions / correlations
(0.853, not 85.3): tables scale by 100.

.. code-block:: text

    {
      "schema_version": 1,
      "run_name": "gpart_d23000_lr0.01_3f9a1c2b",  # == the <run-name> directory
      "method": "GPart",                # table row label (optional; default adapter_type)
      "adapter_type": "gpart",          # registry name: gpart, lora, vera, bitfit, head, full
      "base_model": "roberta-base",     # hub id or local path (optional)
      "task": "rte",
      "seed": 0,
      "primary_metric": "accuracy",     # a key of "test": mcc (cola), pearson (stsb), accuracy
      "test": {"accuracy": 0.783},      # on GLUE's validation split(s), the reported score;
                                        # mnli: "accuracy" (matched) + "accuracy_mm";
                                        # {} when selection.source is "none" (a math
                                        # run that held no rows out)
      "selection": {                    # how the reported checkpoint was chosen
        "strategy": "best",             # "best" (on the split carved from train) | "last"
        "metric": "accuracy",           # best: metric compared on the selection split
        "best_value": 0.801,            # best: its value at the chosen checkpoint
        "best_step": 1200,              # best: optimizer step of the chosen checkpoint
        "size": 498,                    # examples in the selection split (0 for last)
        ...                             # free extras: fraction, split_seed, train_size
      },
      "params": {
        "trainable_adapter": 23000,     # trainable, head excluded: the table's column
        "trainable_head": 592130,
        "trainable_total": 615130,      # optional
        "total": 125263106              # optional: every parameter, frozen included
      },
      "wall_time_s": 812.4,             # training + evaluation wall time of this run
      "data_fingerprint": "3f0c9a2e71b4",  # digest of the data (optional; config.json has
                                        # the full fingerprint); collect warns when seeds
                                        # of one cell differ
      ...                               # any further keys are kept and ignored by tables
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpart.results.io import is_finite_number

SCHEMA_VERSION = 1
RESULTS_FILENAME = "results.json"
SELECTION_STRATEGIES = ("best", "last")


class ResultsError(ValueError):
    """A results file or results path is missing, malformed, or inconsistent."""


def _require(
    record: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str
) -> Any:
    if key not in record:
        raise ResultsError(f"{where}: missing key '{key}'")
    value = record[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise ResultsError(f"{where}: '{key}' must be {_type_names(types)}, got {value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(types))


def validate_results(record: Any, *, where: str = "results") -> dict[str, Any]:
    """Check ``record`` against the schema; return it as a dict.

    Args:
        where: Names the record in error messages (usually its path).

    Raises:
        ResultsError: naming ``where`` and the offending key.
    """
    if not isinstance(record, Mapping):
        raise ResultsError(f"{where}: expected a JSON object, got {type(record).__name__}")
    version = _require(record, "schema_version", int, where)
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{where}: schema_version {version} is not {SCHEMA_VERSION}")
    for key in ("run_name", "adapter_type", "task", "primary_metric"):
        if not _require(record, key, str, where):
            raise ResultsError(f"{where}: '{key}' is empty")
    if "method" in record and (not isinstance(record["method"], str) or not record["method"]):
        raise ResultsError(f"{where}: 'method' must be a non-empty string")
    _require(record, "seed", int, where)
    test = _require(record, "test", Mapping, where)
    for name, value in test.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ResultsError(f"{where}: test metric '{name}' must be a number, got {value!r}")
    primary = record["primary_metric"]
    selection = _require(record, "selection", Mapping, where)
    # A math run that held nothing out (data.heldout_samples 0) reports no test metric:
    # its scores are its evaluations'.
    if test or selection.get("source") != "none":
        if primary not in test:
            raise ResultsError(
                f"{where}: primary metric '{primary}' not in test metrics {sorted(test)}"
            )
        if not is_finite_number(test[primary]):
            raise ResultsError(f"{where}: primary metric '{primary}' is {test[primary]!r}")
    strategy = _require(selection, "strategy", str, f"{where} [selection]")
    if strategy not in SELECTION_STRATEGIES:
        raise ResultsError(
            f"{where}: selection strategy {strategy!r} not in {list(SELECTION_STRATEGIES)}"
        )
    params = _require(record, "params", Mapping, where)
    for key in ("trainable_adapter", "trainable_head"):
        if _require(params, key, int, f"{where} [params]") < 0:
            raise ResultsError(f"{where}: params.{key} is negative")
    wall = _require(record, "wall_time_s", (int, float), where)
    if not is_finite_number(wall) or wall < 0:
        raise ResultsError(f"{where}: wall_time_s must be a non-negative number, got {wall!r}")
    return dict(record)


def build_results(
    *,
    run_name: str,
    adapter_type: str,
    task: str,
    seed: int,
    primary_metric: str,
    test: Mapping[str, float],
    selection: Mapping[str, Any],
    params: Mapping[str, int],
    wall_time_s: float,
    method: str | None = None,
    base_model: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble a validated ``results.json`` record (see the module docstring).

    Numbers from numpy/torch are converted to Python floats/ints; ``extra`` keys are kept.
    """
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_name": run_name,
        "adapter_type": adapter_type,
        "task": task,
        "seed": int(seed),
        "primary_metric": primary_metric,
        "test": {k: float(v) for k, v in test.items()},
        "selection": dict(selection),
        "params": {k: int(v) for k, v in params.items()},
        "wall_time_s": float(wall_time_s),
    }
    if method is not None:
        record["method"] = method
    if base_model is not None:
        record["base_model"] = str(base_model)
    for key, value in extra.items():
        if key in record:
            raise ValueError(f"extra key '{key}' clashes with a schema key")
        record[key] = value
    return validate_results(record, where="build_results")
