"""Figures from collected results only (no model, no training): the paper's plots.

    uv run python -m gpart.results.plots params logs/sweep --task rte --out figs/rte_params
    uv run python -m gpart.results.plots params --task rte --out figs/rte \
        --series GPart logs/gpart_sweep --series LoRA logs/lora_sweep
    uv run python -m gpart.results.plots curves logs/<run-name>/rte/seed_0 --out figs/curves
    uv run python -m gpart.results.plots landscape logs/gpart_*/rte/seed_0 \
        logs/unilora_*/rte/seed_0 --grid 21 --span 0.5 --seeds 3 --out figs/rte_landscape
    uv run python -m gpart.results.plots landscape --from_json figs/rte_landscape.json \
        --out figs/rte_landscape_redrawn
    uv run python -m gpart.results.plots theta logs/gpart_*/rte --out figs/rte_theta

* ``params``: the task's primary metric (x100) against trainable parameters (head excluded,
  log scale), one line per method (or per ``--series``), the mean over seeds with a band of
  ± one sample standard deviation -- the parameter-efficiency figure.
* ``curves``: the selection metric and the training loss against the optimizer step, from
  each run's ``metrics.jsonl`` and its last checkpoint's ``trainer_state.json``.
* ``landscape``: the selection loss around each run's trained vector along two random
  filter-normalised directions (Li et al., 2018), averaged over direction seeds, one
  contour panel per run on a shared colour scale: the paper's landscape figure.
* ``theta``: histograms of the trained vector's entries and, for GPart, of the per-entry
  update ``s_j * theta_j``, one series per run or pooled over seeds.

Each writes ``<out>.png`` and ``<out>.pdf`` and returns the plotted numbers, which the
tests check (not pixels). matplotlib draws (Agg backend, no display needed). The last two
need the trained models: their numbers come from `gpart.runners.analysis` (torch, imported
only when they run), are saved as ``<out>.json`` beside the figure, and ``--from_json``
redraws a figure from that file without a model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpart.results.collect import ResultsError, RunResult, find_results_files, load_run_result
from gpart.results.io import read_json, read_jsonl, write_json_atomic

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
            if r.task != task or r.score is None:  # None: a run that reports no test metric
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


def theta_series(
    values: Sequence[dict[str, Any]], *, per_run: bool = False, bins: int = 100
) -> dict[str, Any]:
    """Histograms and statistics of trained vectors (`gpart.runners.analysis.theta_values`).

    Runs of one run name and task (the seeds of a sweep) are pooled into one series unless
    `per_run`. Each series holds, for ``theta`` and (GPart) ``update``, the number of
    entries, mean, std, min, max, median, excess kurtosis, the share of entries more than
    3 std from the mean (the reference script's outlier threshold), and a histogram of
    `bins` bins (edges and counts), so the figure can be redrawn from them.
    """
    import numpy as np

    groups: dict[str, list[dict[str, Any]]] = {}
    for v in values:
        run = Path(v["run"])
        key = str(run) if per_run else f"{v['label']} {'/'.join(run.parts[-3:-1])}"
        groups.setdefault(key, []).append(v)
    series = []
    for key, members in groups.items():
        entry: dict[str, Any] = {
            "label": key,
            "runs": [m["run"] for m in members],
            "seeds": sorted(m["seed"] for m in members),
        }
        for field in ("theta", "update"):
            if any(m.get(field) is None for m in members):
                entry[field] = None
                continue
            x = np.concatenate([np.asarray(m[field], dtype=np.float64) for m in members])
            mean, std = float(x.mean()), float(x.std())
            counts, edges = np.histogram(x, bins=bins)
            entry[field] = {
                "n": int(x.size),
                "mean": mean,
                "std": std,
                "min": float(x.min()),
                "max": float(x.max()),
                "median": float(np.median(x)),
                "excess_kurtosis": float(((x - mean) ** 4).mean() / std**4 - 3) if std else 0.0,
                "outlier_share_3std": float((np.abs(x - mean) > 3 * std).mean()),
                "edges": edges.tolist(),
                "counts": counts.tolist(),
            }
        series.append(entry)
    return {"figure": "theta", "bins": bins, "series": series}


def _step(path: Path) -> int:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# --------------------------------------------------------------------------------------------
# Drawing


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path) -> list[Path]:
    """Write `fig` as ``<out>.png`` and ``<out>.pdf``, then close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
        for path in paths:
            fig.savefig(path, bbox_inches="tight", dpi=150)
        return paths
    finally:
        plt.close(fig)


def plot_params(data: dict[str, list[dict[str, Any]]], task: str, out: str | Path) -> list[Path]:
    plt = _pyplot()

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
    return _save(fig, out)


def plot_curves(curves: list[dict[str, Any]], out: str | Path) -> list[Path]:
    plt = _pyplot()

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
    return _save(fig, out)


def plot_landscape(data: dict[str, Any], out: str | Path) -> list[Path]:
    """One contour panel per run (`gpart.runners.analysis.landscapes`), shared colour scale."""
    plt = _pyplot()
    import numpy as np

    runs = data["runs"]
    if not runs:
        raise ResultsError("landscape: no runs in the data")
    alphas, betas = np.asarray(data["alphas"]), np.asarray(data["betas"])
    surfaces = [np.asarray(r["surface"], dtype=np.float64) for r in runs]
    if not all(np.isfinite(s).all() for s in surfaces):
        raise ResultsError("landscape: the surface holds non-finite losses (diverged?)")
    low, high = min(s.min() for s in surfaces), max(s.max() for s in surfaces)
    levels = np.linspace(low, high if high > low else low + 1e-6, 25)
    fig, axes = plt.subplots(
        1, len(runs), figsize=(4.2 * len(runs), 3.8), squeeze=False, constrained_layout=True
    )
    for ax, run, surface in zip(axes[0], runs, surfaces, strict=True):
        filled = ax.contourf(betas, alphas, surface, levels=levels, cmap="viridis")
        ax.contour(betas, alphas, surface, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
        ax.plot([0], [0], marker="x", color="white")
        ax.set_title(
            f"{run['label']}\n{run['task']}, {run['dim']:,} trainable, seed {run['seed']}",
            fontsize="medium",
        )
        ax.set_xlabel("direction 2")
        ax.set_ylabel("direction 1")
        ax.set_aspect("equal")
    seeds = len(runs[0]["direction_seeds"])
    fig.colorbar(filled, ax=axes[0].tolist(), label="selection loss", shrink=0.8)
    fig.suptitle(
        f"loss around the trained vector: filter-normalised directions, mean of {seeds} seeds",
        fontsize="medium",
    )
    return _save(fig, out)


def plot_theta(data: dict[str, Any], out: str | Path) -> list[Path]:
    """Histograms of theta (and of GPart's ``s_j * theta_j``), one outline per series."""
    plt = _pyplot()
    import numpy as np

    series = data["series"]
    if not series:
        raise ResultsError("theta: no runs in the data")
    fields = ["theta"] + (["update"] if any(s["update"] for s in series) else [])
    names = {"theta": r"trained vector entries $\theta_j$",
             "update": r"per-entry update $s_j\,\theta_j$ (GPart)"}  # fmt: skip
    fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 3.5), squeeze=False)
    for ax, field in zip(axes[0], fields, strict=True):
        for s in series:
            h = s[field]
            if h is None:
                continue
            edges, counts = np.asarray(h["edges"]), np.asarray(h["counts"], dtype=np.float64)
            density = counts / (counts.sum() * np.diff(edges))
            label = f"{s['label']} (n={h['n']:,}, std {h['std']:.3g})"
            ax.stairs(density, edges, label=label)
        ax.set_xlabel(names[field])
        ax.set_ylabel("density")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return _save(fig, out)


# --------------------------------------------------------------------------------------------
# Command line


def _samples(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 or 'all', got {text!r}")
    return value


def _model_figure_args(p: argparse.ArgumentParser) -> None:
    """The arguments the figures of trained models share."""
    p.add_argument("runs", nargs="*", help="run directories (seed_*), or parents holding many")
    p.add_argument("--out", required=True, help="output path without suffix (.png .pdf .json)")
    p.add_argument("--labels", nargs="+", default=None, help="one per run (default: method)")
    p.add_argument("--from_json", default=None, help="redraw from a saved <out>.json")
    p.add_argument("--base_model", default=None, help="base model (default: each run's own)")
    p.add_argument("--data_dir", default=None, help="local data (default: each run's own)")


def _model_figure(args: argparse.Namespace) -> list[Path]:
    """``landscape`` / ``theta``: compute (torch) or read the numbers, save them, draw."""
    draw = plot_landscape if args.figure == "landscape" else plot_theta
    if args.from_json is not None:
        if args.runs:
            raise ResultsError("--from_json redraws a saved figure: give no runs with it")
        data = read_json(args.from_json)
        if data.get("figure") != args.figure:
            raise ResultsError(
                f"--from_json {args.from_json}: holds a {data.get('figure')!r} figure, not "
                f"{args.figure!r}"
            )
        return draw(data, args.out)
    if not args.runs:
        raise ResultsError(f"{args.figure}: give run directories (or --from_json FILE)")
    # The one command here that needs trained models: it reaches up into the runners (and
    # torch) when it runs, never when this module is imported.
    from gpart.configs import ConfigError
    from gpart.data.loading import DataError

    try:
        data = _compute(args)
    except (ConfigError, DataError) as err:  # bad input from the runners: one line too
        raise ResultsError(str(err)) from None
    json_path = Path(args.out).with_suffix(".json")
    write_json_atomic(json_path, data)
    return [*draw(data, args.out), json_path]


def _compute(args: argparse.Namespace) -> dict[str, Any]:
    from gpart.runners import analysis

    runs = analysis.find_runs(args.runs)
    if args.figure == "landscape":
        return analysis.landscapes(
            runs,
            labels=args.labels,
            base_model=args.base_model,
            data_dir=args.data_dir,
            grid=args.grid,
            span=args.span,
            seeds=args.seeds,
            seed=args.seed,
            max_samples=args.max_samples,
            batch_size=args.batch_size,
        )
    if args.labels is not None and len(args.labels) != len(runs):
        raise ResultsError(f"--labels: {len(args.labels)} labels for {len(runs)} runs")
    values = []
    for i, run in enumerate(runs):
        loaded = analysis.load_run(run, base_model=args.base_model, data_dir=args.data_dir)
        v = analysis.theta_values(loaded)
        if args.labels is not None:
            v["label"] = args.labels[i]
        values.append(v)
    return theta_series(values, per_run=args.per_run, bins=args.bins)


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
    land = sub.add_parser("landscape", help="selection loss around the trained vector")
    _model_figure_args(land)
    land.add_argument("--grid", type=int, default=21, help="points per axis (odd: the centre)")
    land.add_argument("--span", type=float, default=0.5, help="axes run over [-span, span]")
    land.add_argument("--seeds", type=int, default=3, help="direction pairs averaged")
    land.add_argument("--seed", type=int, default=0, help="the first direction seed")
    land.add_argument(
        "--max_samples",
        type=_samples,
        default=1024,
        help="selection examples evaluated (a seeded subset; 'all': the whole split)",
    )
    land.add_argument("--batch_size", type=int, default=None, help="default: the run's")
    th = sub.add_parser("theta", help="histograms of the trained vector (and s_j*theta_j)")
    _model_figure_args(th)
    th.add_argument("--per_run", action="store_true", help="one series per run, not per sweep")
    th.add_argument("--bins", type=int, default=100, help="histogram bins")
    args = parser.parse_args(argv)
    try:
        if args.figure in ("landscape", "theta"):
            written = _model_figure(args)
        elif args.figure == "params":
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
