"""Run outputs: run names/directories, crash-safe files, the results.json schema, tables.

Light on purpose (no torch/transformers imports) so collecting results is quick.
"""

from gpart.results.collect import (
    MethodSummary,
    ResultsTable,
    RunResult,
    TaskSummary,
    collect_results,
    find_results_files,
    format_param_count,
    load_eval_results,
    load_run_result,
    summarize,
    with_evaluations,
)
from gpart.results.io import (
    append_jsonl,
    read_json,
    read_jsonl,
    write_json_atomic,
    write_text_atomic,
)
from gpart.results.rundir import config_hash, parse_run_dir, run_dir, run_name
from gpart.results.schema import (
    RESULTS_FILENAME,
    SCHEMA_VERSION,
    ResultsError,
    build_results,
    validate_results,
)

__all__ = [
    "RESULTS_FILENAME",
    "SCHEMA_VERSION",
    "MethodSummary",
    "ResultsError",
    "ResultsTable",
    "RunResult",
    "TaskSummary",
    "append_jsonl",
    "build_results",
    "collect_results",
    "config_hash",
    "find_results_files",
    "format_param_count",
    "load_eval_results",
    "load_run_result",
    "parse_run_dir",
    "read_json",
    "read_jsonl",
    "run_dir",
    "run_name",
    "summarize",
    "validate_results",
    "with_evaluations",
    "write_json_atomic",
    "write_text_atomic",
]
