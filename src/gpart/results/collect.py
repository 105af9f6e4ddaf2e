"""Collect finished runs into a paper table: mean ± sample std over seeds, per method and task.

Input: any mix of ``results.json`` files, run directories, or parents holding many (searched
recursively; the same file reached twice counts once). Each file must follow
:mod:`gpart.results.schema`.

Aggregation:

* rows are *runs* (one ``run_name`` = one adapter + hyperparameters + config hash), labelled
  by their ``method`` (default ``adapter_type``; the run name is appended when two rows would
  share a label) and listed in the order they are first found;
* a cell is the task's primary metric ×100 over seeds: mean ± sample std (``ddof=1``;
  none with one seed) and the number of seeds (a loss column, `RunResult.scale` 1, is
  shown as it is);
* the average (e.g. the GLUE average) is the mean of the cell means over the tasks present;
  a row missing some of the table's tasks is marked, its average covers the tasks it has,
  and a warning says so;
* the parameter column is the trainable parameter count excluding the head, as papers
  report it (``23.0K``).

Evaluations made after training (math: GSM8K / MATH accuracy by generation) live in the run
directory as ``eval/<dataset>/results.json`` with at least ``accuracy`` (a fraction) and
``total``; :func:`load_eval_results` turns them into more cells of the run's row, one column
per dataset (`collect_main`'s ``expand`` hook). A run without some evaluation has an empty
cell there. The directory search never takes those files for runs of their own.

Errors (missing path, no results, malformed file, the same seed twice for one run and task)
raise :class:`~gpart.results.schema.ResultsError` naming the path.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json import JSONDecodeError
from pathlib import Path
from typing import Any

from gpart.results.io import is_finite_number, read_json
from gpart.results.schema import RESULTS_FILENAME, ResultsError, validate_results

MISSING_MARK = "—"
EVAL_DIR = "eval"  # <run dir>/eval/<dataset>/results.json: evaluations after training
PARTIAL_MARK = "*"


@dataclass(frozen=True)
class RunResult:
    """The fields of one ``results.json`` that tables need."""

    path: Path
    run_name: str
    method: str
    adapter_type: str
    task: str
    seed: int
    primary_metric: str
    # test[primary_metric], raw (not ×100); None for a run that reports no test metric
    # (a math run that held nothing out: `with_evaluations` leaves it out of tables)
    score: float | None
    params_adapter: int
    wall_time_s: float
    # Digest of the data the run trained and was evaluated on (None: older runs).
    data_fingerprint: str | None = None
    # The size preset of the backbone (base, large, ...); None: older runs.
    model_size: str | None = None
    # Table value = scale * score: 100 for metrics that are fractions, 1 for a loss.
    scale: float = 100.0
    # Examples an after-training evaluation scored (`load_eval_results`); None otherwise.
    eval_size: int | None = None
    # The backbone (hub id or path) the run adapted, when its results.json says.
    base_model: str | None = None


@dataclass(frozen=True)
class TaskSummary:
    """One table cell: a run's primary metric on one task over seeds (×100)."""

    task: str
    metric: str
    mean: float
    std: float | None  # sample std; None with a single seed
    n: int
    seeds: tuple[int, ...]
    scale: float = 100.0  # the cell's values are scale x the raw metric


@dataclass
class MethodSummary:
    """One table row."""

    label: str
    run_name: str
    adapter_type: str
    params_adapter: tuple[int, ...]  # distinct values seen (normally one)
    tasks: dict[str, TaskSummary]
    missing: tuple[str, ...]
    average: float | None
    wall_time_s: float


def format_param_count(n: int) -> str:
    """``512``, ``23.0K``, ``0.3M``-style counts: one decimal, K / M / B by magnitude.

    The unit switches where rounding would print ``1000.0`` (999,960 -> ``1.0M``).
    """
    if n < 0:
        raise ValueError(f"parameter count must be >= 0, got {n}")
    if n < 1_000:
        return str(n)
    for divisor, suffix in ((1e3, "K"), (1e6, "M"), (1e9, "B")):
        value = n / divisor
        if round(value, 1) < 1000 or suffix == "B":
            break
    return f"{value:.1f}{suffix}"


def _latex_escape(text: str) -> str:
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(special.get(c, c) for c in text)


@dataclass
class ResultsTable:
    """Rows of :class:`MethodSummary` over ``tasks`` columns, plus warnings to show."""

    tasks: tuple[str, ...]
    methods: list[MethodSummary]
    warnings: list[str] = field(default_factory=list)
    task_labels: dict[str, str] = field(default_factory=dict)
    average_label: str | None = "Avg."  # None: no average column (math: no mean of datasets)
    task_decimals: dict[str, int] = field(default_factory=dict)  # per column, e.g. a loss

    def _label(self, task: str) -> str:
        return self.task_labels.get(task, task)

    def _decimals(self, task: str, default: int) -> int:
        return self.task_decimals.get(task, default)

    def _cell(self, s: TaskSummary | None, decimals: int, *, latex: bool = False) -> str:
        if s is None:
            return "--" if latex else MISSING_MARK
        d = self._decimals(s.task, decimals)
        if s.std is None:
            return f"{s.mean:.{d}f}"
        if latex:
            return f"${s.mean:.{d}f}_{{\\pm {s.std:.{d}f}}}$"
        return f"{s.mean:.{d}f} ± {s.std:.{d}f}"

    @staticmethod
    def _seeds(m: MethodSummary) -> str:
        ns = sorted({s.n for s in m.tasks.values()})
        if not ns:
            return "0"
        return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"

    @staticmethod
    def _params(m: MethodSummary) -> str:
        lo, hi = m.params_adapter[0], m.params_adapter[-1]
        return (
            format_param_count(lo)
            if lo == hi
            else f"{format_param_count(lo)}–{format_param_count(hi)}"
        )

    def _average(self, m: MethodSummary, decimals: int, mark: str) -> str:
        if m.average is None:
            return MISSING_MARK
        return f"{m.average:.{decimals}f}" + (mark if m.missing else "")

    def by_d(self) -> ResultsTable:
        """The same cells, one row per method and trainable-parameter count (a `d` sweep),
        sorted by method then count and labelled ``<method> d=<count>``."""
        rows = []
        for m in self.methods:
            base = m.label.split(" [", 1)[0]
            params = "/".join(format_param_count(p) for p in m.params_adapter)
            rows.append(
                (base, m.params_adapter, dataclasses.replace(m, label=f"{base} d={params}"))
            )
        rows.sort(key=lambda r: (r[0], r[1]))
        labels = [r[2].label for r in rows]
        for _, _, m in rows:  # two variants of one method at one count: name the run
            if labels.count(m.label) > 1:
                m.label = f"{m.label} [{m.run_name}]"
        return dataclasses.replace(self, methods=[r[2] for r in rows])

    def to_markdown(self, decimals: int = 1) -> str:
        """GitHub-flavoured markdown table, with a footnote when an average is partial."""
        avg = [] if self.average_label is None else [self.average_label]
        header = ["Method", "Params", "Seeds", *map(self._label, self.tasks), *avg]
        lines = [
            "| " + " | ".join(header) + " |",
            "|:--|" + "--:|" * (len(header) - 1),
        ]
        for m in self.methods:
            cells = [self._cell(m.tasks.get(task), decimals) for task in self.tasks]
            row = [m.label, self._params(m), self._seeds(m), *cells]
            if self.average_label is not None:
                row.append(self._average(m, decimals, "\\" + PARTIAL_MARK))
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        if any(m.missing for m in self.methods):
            lines.append("")
            if self.average_label is None:
                lines.append(f"{MISSING_MARK} = no results.")
            else:
                lines.append(
                    f"\\{PARTIAL_MARK} average over the tasks present; {MISSING_MARK} = no results."
                )
        return "\n".join(lines) + "\n"

    def to_latex(self, decimals: int = 1) -> str:
        """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``): ``mean_{±std}`` cells."""
        avg = [] if self.average_label is None else [self.average_label]
        cols = "lr" + "r" * len(self.tasks) + "r" * len(avg)
        header = ["Method", "Params", *map(self._label, self.tasks), *avg]
        unscaled = [
            self._label(t)
            for t in self.tasks
            if any(m.tasks[t].scale != 100.0 for m in self.methods if t in m.tasks)
        ]
        scaled = "x100" + (f"; {', '.join(unscaled)} as is" if unscaled else "")
        lines = [
            f"% mean and sample std over seeds ({scaled}); params: trainable, head excluded",
            f"\\begin{{tabular}}{{{cols}}}",
            "\\toprule",
            " & ".join(_latex_escape(h) for h in header) + " \\\\",
            "\\midrule",
        ]
        for m in self.methods:
            cells = [_latex_escape(m.label), _latex_escape(self._params(m))]
            cells += [self._cell(m.tasks.get(t), decimals, latex=True) for t in self.tasks]
            if self.average_label is not None:
                value = "--" if m.average is None else f"{m.average:.{decimals}f}"
                cells.append(value + ("$^{*}$" if m.missing and m.average is not None else ""))
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One row per method; per task ``<task>_mean``, ``<task>_std``, ``<task>_n`` (×100,
        unrounded; empty when missing), then the average (when the table has one), the number
        of tasks in it and the summed wall time of the runs."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header = ["method", "run_name", "adapter_type", "params_adapter"]
        for task in self.tasks:
            header += [f"{task}_mean", f"{task}_std", f"{task}_n"]
        header += (["average"] if self.average_label is not None else []) + ["n_tasks"]
        header += ["wall_time_s"]
        writer.writerow(header)
        for m in self.methods:
            row: list[object] = [
                m.label,
                m.run_name,
                m.adapter_type,
                ";".join(str(p) for p in m.params_adapter),
            ]
            for task in self.tasks:
                s = m.tasks.get(task)
                row += ["", "", 0] if s is None else [s.mean, "" if s.std is None else s.std, s.n]
            if self.average_label is not None:
                row.append("" if m.average is None else m.average)
            row += [len(m.tasks), m.wall_time_s]
            writer.writerow(row)
        return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Reading


def find_results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``results.json`` under ``paths`` (files are taken as given), in argument order
    and sorted within a directory; duplicates removed.

    Raises:
        ResultsError: no paths, a path that does not exist, or one without any results.
    """
    paths = list(paths)
    if not paths:
        raise ResultsError("no results path given")
    found: dict[Path, None] = {}
    for raw in paths:
        if not str(raw).strip():
            # Path("") is the current directory: an unset shell variable must not make
            # collection crawl whatever lies below the working directory.
            raise ResultsError("empty path given; name a run directory or a parent of runs")
        path = Path(raw)
        if not path.exists():
            raise ResultsError(f"no such file or directory: {path}")
        if path.is_file():
            files = [path]
        else:
            files = [f for f in sorted(path.rglob(RESULTS_FILENAME)) if not is_eval_file(f)]
            if not files:
                raise ResultsError(
                    f"no {RESULTS_FILENAME} under {path} (expected "
                    f"<run-name>/<task>/seed_<seed>/{RESULTS_FILENAME}; unfinished runs have none)"
                )
        for f in files:
            found.setdefault(f.resolve(), None)
    return list(found)


def is_eval_file(path: Path) -> bool:
    """Whether `path` is an after-training evaluation (``.../eval/<dataset>/results.json``),
    read with its run by :func:`load_eval_results`, not a run of its own."""
    return path.parent.parent.name == EVAL_DIR


RESCORED_RESULTS = "results.rescored.json"  # eval_math.py --rescore writes it beside


def _read_record(path: Path) -> dict:
    try:
        return read_json(path)
    except JSONDecodeError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from err
    except OSError as err:
        raise ResultsError(f"{path}: cannot read ({err.strerror or err})") from err


def eval_score(path: Path, record: dict, metric: str = "accuracy", grader: str | None = None):
    """(score, total) of one evaluation file: `metric` (a fraction in [0, 1]) and the
    examples scored. With `grader`, that grader's accuracy from ``graders`` (written by
    ``eval_math.py``'s ``graders``); a file without it falls back to
    ``results.rescored.json`` beside it (``--rescore FILE graders ...``), and a file from before graders were recorded
    counts as ``gpart``'s.

    Raises:
        ResultsError: no valid score or total, or no such grader's.
    """
    value = record.get(metric)
    if grader is not None:
        graders = record.get("graders")
        if isinstance(graders, dict) and isinstance(graders.get(grader), dict):
            value = graders[grader].get(metric)
        elif graders is None and grader == "gpart":
            pass  # written before several graders: ours
        else:
            rescored = path.with_name(RESCORED_RESULTS)
            other = _read_record(rescored) if rescored.is_file() else {}
            if isinstance(other.get("graders"), dict) and grader in other["graders"]:
                return eval_score(rescored, other, metric, grader)
            recorded = ", ".join(graders) if isinstance(graders, dict) else "gpart"
            raise ResultsError(
                f"{path}: no '{grader}' grader (recorded: {recorded}); re-score with "
                f"eval_math.py --rescore {path.with_name('predictions.jsonl')} graders {grader}"
            )
    total = record.get("total")
    if not is_finite_number(value) or not 0.0 <= value <= 1.0:
        raise ResultsError(f"{path}: '{metric}' must be a fraction in [0, 1], got {value!r}")
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise ResultsError(f"{path}: 'total' must be a positive int, got {total!r}")
    return float(value), total


def load_eval_results(
    run: RunResult, metric: str = "accuracy", grader: str | None = None
) -> list[RunResult]:
    """The after-training evaluations of `run`, one `RunResult` per dataset (its column).

    Reads ``<run dir>/eval/<dataset>/results.json``: `metric` (a fraction in [0, 1]; by
    `grader` when given, see `eval_score`) is the score and ``total`` (examples scored)
    the cell's size, which must agree across seeds; ``seconds``, when present, the wall
    time. A dataset folder without ``results.json`` (an evaluation still running) is no
    result. Everything else is the run's own.

    Raises:
        ResultsError: an unreadable file, or one without a valid `metric` / ``total``.
    """
    root = run.path.parent / EVAL_DIR
    found = []
    for path in sorted(root.glob(f"*/{RESULTS_FILENAME}")) if root.is_dir() else []:
        record = _read_record(path)
        value, total = eval_score(path, record, metric, grader)
        seconds = record.get("seconds")
        found.append(
            dataclasses.replace(
                run,
                path=path,
                task=path.parent.name,
                primary_metric=metric,
                score=value,
                scale=100.0,
                wall_time_s=float(seconds) if is_finite_number(seconds) else 0.0,
                eval_size=total,
            )
        )
    return found


def with_evaluations(run: RunResult, grader: str | None = None) -> list[RunResult]:
    """`run`'s own result followed by its after-training evaluations (`load_eval_results`):
    the entries a math run adds to a table (held-out loss, GSM8K, MATH, ...)."""
    own = [run] if run.score is not None else []  # a run that held nothing out has none
    return [*own, *load_eval_results(run, grader=grader)]


def find_base_evaluations(paths: Iterable[str | Path]) -> list[Path]:
    """Every evaluation under `paths` that belongs to no run: an
    ``<dir>/eval/<dataset>/results.json`` whose ``<dir>`` holds no ``results.json`` (a
    base model evaluated alone, ``eval_math.py --base_model M --output_dir <dir>``)."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        files = [path] if path.is_file() else sorted(path.rglob(RESULTS_FILENAME))
        for f in files:
            if is_eval_file(f) and not (f.parent.parent.parent / RESULTS_FILENAME).is_file():
                found.setdefault(f.resolve(), None)
    return list(found)


BASE_METHOD = "base model"


def load_base_evaluation(path: Path, grader: str | None = None) -> RunResult:
    """A base model's evaluation as a table entry: its own row (method ``base model``,
    named by the model), 0 trainable parameters, seed 0, one column per dataset.

    Raises:
        ResultsError: see `eval_score`.
    """
    record = _read_record(path)
    value, total = eval_score(path, record, grader=grader)
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    model = str(settings.get("model") or path.parent.parent.parent.name)
    seconds = record.get("seconds")
    return RunResult(
        path=path,
        run_name=f"{BASE_METHOD}: {model} ({path.parent.parent.parent})",
        method=f"{BASE_METHOD} ({Path(model).name or model})",
        adapter_type="none",
        task=path.parent.name,
        seed=0,
        primary_metric="accuracy",
        score=value,
        params_adapter=0,
        wall_time_s=float(seconds) if is_finite_number(seconds) else 0.0,
        base_model=model,
        eval_size=total,
    )


def load_base_evaluations(
    paths: Iterable[str | Path], grader: str | None = None
) -> list[RunResult]:
    """`load_base_evaluation` of every `find_base_evaluations` file under `paths`."""
    return [load_base_evaluation(p, grader) for p in find_base_evaluations(paths)]


def _score_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def load_run_result(path: str | Path) -> RunResult:
    """Read and validate one ``results.json``."""
    path = Path(path)
    try:
        record = validate_results(read_json(path), where=str(path))
    except JSONDecodeError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from err
    except OSError as err:
        raise ResultsError(f"{path}: cannot read ({err.strerror or err})") from err
    return RunResult(
        path=path,
        run_name=record["run_name"],
        method=record.get("method") or record["adapter_type"],
        adapter_type=record["adapter_type"],
        task=record["task"],
        seed=record["seed"],
        primary_metric=record["primary_metric"],
        score=_score_or_none(record["test"].get(record["primary_metric"])),
        params_adapter=int(record["params"]["trainable_adapter"]),
        wall_time_s=float(record["wall_time_s"]),
        data_fingerprint=record.get("data_fingerprint"),
        model_size=record.get("model_size"),
        base_model=record.get("base_model"),
        # a loss is shown as it is: x100 only makes sense for fractions and correlations
        scale=1.0 if record["primary_metric"] == "loss" else 100.0,
    )


# --------------------------------------------------------------------------------------------
# Aggregation


def summarize(
    results: Sequence[RunResult],
    *,
    tasks: Sequence[str] | None = None,
    task_order: Sequence[str] = (),
    task_labels: Mapping[str, str] | None = None,
    average_label: str | None = "Avg.",
    task_decimals: Mapping[str, int] | None = None,
) -> ResultsTable:
    """Aggregate run results into a :class:`ResultsTable`.

    Args:
        tasks: Columns, in order; results of other tasks are ignored. ``None``: every task
            found, ordered by ``task_order`` then alphabetically.
        task_order: Preferred column order when ``tasks`` is None.
        task_labels: Column headers (``{"sst2": "SST-2"}``).
        average_label: Header of the average column (``GLUE Avg.``); None: no such column.
        task_decimals: Decimals of some columns, overriding the table's (a loss: 3).
    """
    if not results:
        raise ResultsError("no results to summarize")
    found_tasks = {r.task for r in results}
    if tasks is None:
        rank = {t: i for i, t in enumerate(task_order)}
        columns = tuple(sorted(found_tasks, key=lambda t: (rank.get(t, len(rank)), t)))
    else:
        columns = tuple(dict.fromkeys(tasks))
        if not columns:
            raise ResultsError("empty task list")
    warnings = [f"no results for task '{t}' in any run" for t in columns if t not in found_tasks]

    # Group by run, then task; keep first-seen order of runs.
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.run_name, []).append(r)

    rows: list[MethodSummary] = []
    for name, runs in groups.items():
        first = runs[0]
        for r in runs[1:]:
            if (r.adapter_type, r.method) != (first.adapter_type, first.method):
                raise ResultsError(
                    f"run '{name}' mixes methods: {first.path} says "
                    f"{first.adapter_type}/{first.method}, {r.path} says {r.adapter_type}/{r.method}"
                )
        by_task: dict[str, dict[int, RunResult]] = {}
        for r in runs:
            seeds = by_task.setdefault(r.task, {})
            if r.seed in seeds:
                raise ResultsError(
                    f"run '{name}', task '{r.task}', seed {r.seed} appears twice: "
                    f"{seeds[r.seed].path} and {r.path}"
                )
            seeds[r.seed] = r
        cells: dict[str, TaskSummary] = {}
        for task in columns:
            if task not in by_task:
                continue
            seed_runs = [by_task[task][s] for s in sorted(by_task[task])]
            metrics = {r.primary_metric for r in seed_runs}
            if len(metrics) > 1:
                raise ResultsError(
                    f"run '{name}', task '{task}': seeds disagree on the primary metric {sorted(metrics)}"
                )
            data = sorted({r.data_fingerprint for r in seed_runs if r.data_fingerprint})
            if len(data) > 1:
                # One cell must average runs on one dataset: a re-export or a fixed label
                # file between seeds would otherwise pass for seed variance.
                by_data = {d: [r.seed for r in seed_runs if r.data_fingerprint == d] for d in data}
                warnings.append(
                    f"run '{name}', task '{task}': seeds were trained on different data ("
                    + "; ".join(f"data {d}: seeds {s}" for d, s in by_data.items())
                    + "); re-run the odd ones with --force on one dataset"
                )
            sizes = sorted({r.eval_size for r in seed_runs if r.eval_size is not None})
            if len(sizes) > 1:
                warnings.append(
                    f"run '{name}', task '{task}': seeds were evaluated on different numbers of "
                    + "examples ("
                    + "; ".join(
                        f"{n}: seeds {[r.seed for r in seed_runs if r.eval_size == n]}"
                        for n in sizes
                    )
                    + "); evaluate every seed on the same set"
                )
            unscored = [r.path for r in seed_runs if r.score is None]
            if unscored:
                raise ResultsError(
                    f"{unscored[0]}: reports no test metric (nothing was held out); collect "
                    "it with its evaluations (collect_results_math.py)"
                )
            scale = seed_runs[0].scale
            values = [scale * r.score for r in seed_runs]
            cells[task] = TaskSummary(
                task=task,
                metric=metrics.pop(),
                mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else None,
                n=len(values),
                seeds=tuple(r.seed for r in seed_runs),
                scale=scale,
            )
        if not cells:
            warnings.append(f"run '{name}' has no results for the tasks {list(columns)}; left out")
            continue
        missing = tuple(t for t in columns if t not in cells)
        used = [r for task_runs in by_task.values() for r in task_runs.values()]
        rows.append(
            MethodSummary(
                label=first.method,
                run_name=name,
                adapter_type=first.adapter_type,
                params_adapter=tuple(sorted({r.params_adapter for r in used if r.task in cells})),
                tasks=cells,
                missing=missing,
                average=statistics.fmean(s.mean for s in cells.values()),
                wall_time_s=sum(r.wall_time_s for r in used if r.task in cells),
            )
        )
    if not rows:
        raise ResultsError(f"no results for any of the tasks {list(columns)}")

    # Disambiguate rows that would share a label (two sweeps of the same method).
    counts: dict[str, int] = {}
    for m in rows:
        counts[m.label] = counts.get(m.label, 0) + 1
    for m in rows:
        if counts[m.label] > 1:
            m.label = f"{m.label} [{m.run_name}]"
    for m in rows:
        if m.missing:
            present = [t for t in columns if t in m.tasks]
            note = "" if average_label is None else f"; its {average_label} covers {present} only"
            warnings.append(f"{m.label}: no results for {list(m.missing)}{note}")
    return ResultsTable(
        tasks=columns,
        methods=rows,
        warnings=warnings,
        task_labels=dict(task_labels or {}),
        average_label=average_label,
        task_decimals=dict(task_decimals or {}),
    )


def collect_results(
    paths: Iterable[str | Path],
    *,
    tasks: Sequence[str] | None = None,
    task_order: Sequence[str] = (),
    task_labels: Mapping[str, str] | None = None,
    average_label: str = "Avg.",
) -> ResultsTable:
    """:func:`find_results_files` + :func:`load_run_result` + :func:`summarize`."""
    results = [load_run_result(p) for p in find_results_files(paths)]
    return summarize(
        results,
        tasks=tasks,
        task_order=task_order,
        task_labels=task_labels,
        average_label=average_label,
    )
