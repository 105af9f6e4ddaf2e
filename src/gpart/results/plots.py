"""Figures from collected results only (no model, no training): the paper's plots.

    uv run python -m gpart.results.plots params logs/sweep --task rte --out figs/rte_params
    uv run python -m gpart.results.plots params --task rte --out figs/rte \
        --series GPart logs/gpart_sweep --series LoRA logs/lora_sweep
    uv run python -m gpart.results.plots curves logs/<run-name>/rte/seed_0 --out figs/curves

* ``params``: the task's primary metric (x100) against trainable parameters (head excluded,
  log scale), one line per method (or per ``--series``), the mean over seeds with a band of
  ± one sample standard deviation -- the parameter-efficiency figure.
* ``curves``: the selection metric and the training loss against the optimizer step, from
  each run's ``metrics.jsonl`` and its last checkpoint's ``trainer_state.json``.

Each writes ``<out>.png`` and ``<out>.pdf`` and returns the plotted numbers, which the
tests check (not pixels). matplotlib draws (Agg backend, no display needed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpart.results.collect import ResultsError, RunResult, find_results_files, load_run_result
from gpart.results.io import read_json, read_jsonl

# --------------------------------------------------------------------------------------------
# Data


def params_curve(
    series: dict[str, Sequence[RunResult]], task: str
) -> dict[str, list[dict[str, Any]]]:
    """Per series, one point per trainable-parameter count: mean, std, n over seeds (x100).

    Raises:
        ResultsError: a series without results for `task`, or two runs of one series at the
            same parameter count (two variants in one line: give each its own ``--series``).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for label, results in series.items():
        by_params: dict[int, dict[str, Any]] = {}
        for r in results:
            if r.task != task:
                continue
            point = by_params.setdefault(r.params_adapter, {"run_name": r.run_name, "scores": {}})
            if point["run_name"] != r.run_name:
                raise ResultsError(
                    f"series {label!r}: runs {point['run_name']} and {r.run_name} both train "
                    f"{r.params_adapter} parameters; give each variant its own --series"
                )
            point["scores"][r.seed] = 100.0 * r.score
        if not by_params:
            raise ResultsError(f"series {label!r}: no results for task {task!r}")
        points = []
        for params in sorted(by_params):
            scores = list(by_params[params]["scores"].values())
            points.append(
                {
                    "params": params,
                    "mean": statistics.fmean(scores),
                    "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                    "n": len(scores),
                    "run_name": by_params[params]["run_name"],
                }
            )
        out[label] = points
    return out


def training_curve(run: Path) -> dict[str, Any]:
    """``{"metric", "selection": [(step, value)], "loss": [(step, loss)]}`` of one run."""
    run = Path(run)
    results = read_json(run / "results.json") if (run / "results.json").exists() else {}
    metric = results.get("primary_metric")
    evals = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
    if metric is None:  # unfinished run: the first eval_* metric that is not the loss
        keys = [k for e in evals for k in e if k.startswith("eval_") and k != "eval_loss"]
        metric = keys[0][len("eval_") :] if keys else None
    selection = [(e["step"], e[f"eval_{metric}"]) for e in evals if f"eval_{metric}" in e]
    loss: list[tuple[int, float]] = []
    states = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: _step(p.parent))
    if states:
        history = read_json(states[-1]).get("log_history", [])
        loss = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if not selection and not loss:
        raise ResultsError(f"{run}: no evaluations in metrics.jsonl and no checkpoint log")
    return {"run": str(run), "metric": metric, "selection": selection, "loss": loss}


def _step(path: Path) -> int:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# --------------------------------------------------------------------------------------------
# Drawing


def _save(fig: Any, out: str | Path) -> list[Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return paths


def plot_params(data: dict[str, list[dict[str, Any]]], task: str, out: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in data.items():
        x = [p["params"] for p in points]
        mean = [p["mean"] for p in points]
        std = [p["std"] for p in points]
        ax.plot(x, mean, marker="o", label=label)
        ax.fill_between(
            x, [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2,
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (head excluded)")
    ax.set_ylabel(f"{task} (x100, mean ± std over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    try:
        return _save(fig, out)
    finally:
        plt.close(fig)


def plot_curves(curves: list[dict[str, Any]], out: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5), sharex=True)
    for curve in curves:
        label = "/".join(Path(curve["run"]).parts[-3:])
        if curve["selection"]:
            top.plot(*zip(*curve["selection"], strict=True), marker="o", label=label)
        if curve["loss"]:
            bottom.plot(*zip(*curve["loss"], strict=True), label=label)
    metrics = {c["metric"] for c in curves if c["metric"]}
    top.set_ylabel(f"selection {', '.join(sorted(metrics)) or 'metric'}")
    bottom.set_ylabel("training loss")
    bottom.set_xlabel("optimizer step")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(fontsize="small")
    try:
        return _save(fig, out)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# Command line


def _results(paths: Sequence[str]) -> list[RunResult]:
    return [load_run_result(p) for p in find_results_files(paths)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpart.results.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="figure", required=True)
    p = sub.add_parser("params", help="metric vs trainable parameters, one line per method")
    p.add_argument("paths", nargs="*", help="results to group by method (or use --series)")
    p.add_argument("--task", required=True, help="the task whose primary metric is plotted")
    p.add_argument(
        "--series",
        nargs="+",
        action="append",
        metavar=("LABEL", "PATH"),
        help="a line of its own: its label, then its result paths (repeatable)",
    )
    p.add_argument("--out", required=True, help="output path without suffix (.png and .pdf)")
    c = sub.add_parser("curves", help="selection metric and training loss vs step")
    c.add_argument("runs", nargs="+", help="run directories (seed_*)")
    c.add_argument("--out", required=True, help="output path without suffix (.png and .pdf)")
    args = parser.parse_args(argv)
    try:
        if args.figure == "params":
            series: dict[str, list[RunResult]] = {}
            for label, *paths in args.series or []:
                if not paths:
                    raise ResultsError(f"--series {label}: give its result paths after the label")
                series[label] = _results(paths)
            if args.paths:
                for r in _results(args.paths):
                    series.setdefault(r.method, []).append(r)
            if not series:
                raise ResultsError("no results: give paths or --series LABEL PATH...")
            written = plot_params(params_curve(series, args.task), args.task, args.out)
        else:
            written = plot_curves([training_curve(Path(r)) for r in args.runs], args.out)
    except (ResultsError, OSError, ValueError) as err:
        print(f"plots: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
