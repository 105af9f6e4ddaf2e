"""The paper's analysis figures, computed from finished runs of any runner: the torch side.

`gpart.results.plots` draws them (``landscape`` and ``theta``, matplotlib only) and calls
into this module for the numbers, which need the trained model:

* `landscape_of_run`: the selection-split loss on a 2-D grid around a run's trained vector
  ``theta*`` (every trainable tensor outside the task head, as the reference script's
  landscape keeps the classifier fixed), ``L(theta* + a d1 + b d2)`` for ``a, b`` in
  ``[-span, span]``. The directions are random Gaussian vectors filter-normalised as in Li
  et al. (2018), "Visualizing the Loss Landscape of Neural Nets", Sec. 4: each filter of
  a direction is rescaled to the norm of the same filter of ``theta*``. A filter is a row
  (output unit) of a matrix-shaped tensor; a vector-shaped tensor (GPart's ``theta``,
  Uni-LoRA's ``theta_d``, VeRA's scaling vectors) is one filter, so GPart's directions
  have ``||d|| = ||theta*||``, the normalisation of the reference script. The surface is
  averaged over direction seeds; each seed's surface is kept too.
* `theta_values`: the trained vector's entries and, for GPart's partition projection,
  the per-entry update ``s_j * theta_j`` (every adapted weight of group ``j`` moves by it).

The loss is the one `Trainer` reports as ``eval_loss`` (its ``prediction_step`` with the
run's own training arguments: precision, label smoothing, batch size; the mean of the batch
losses weighted by batch size), so the landscape's centre is the run's recorded selection
loss when the whole selection split is used. Batches are collated once and reused for every
grid point, under `torch.no_grad`.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpart.configs import ConfigError, ExperimentConfig, experiment_from_dict
from gpart.heads import is_head_param
from gpart.results import RESULTS_FILENAME, read_json, read_jsonl
from gpart.runners.common import load_trained
from gpart.runners.core import Domain, training_arguments
from gpart.runners.evaluate import find_runs, weights_dir
from gpart.tuner.model import THETA

# The reference script evaluates its landscape on 1,024 validation examples (its default).
DEFAULT_MAX_SAMPLES = 1024

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "LoadedRun",
    "SelectionLoss",
    "filter_normalised_direction",
    "find_runs",
    "landscape_of_run",
    "landscapes",
    "load_run",
    "recorded_selection_loss",
    "runner_domain",
    "theta_values",
    "trainable_space",
]


# --------------------------------------------------------------------------- a finished run
def runner_domain(name: str) -> Domain:
    """The `Domain` of runner ``gpart.runners.<name>`` (every runner module holds one)."""
    try:
        module = importlib.import_module(f"gpart.runners.{name}")
    except ModuleNotFoundError:
        raise ConfigError(f"no runner for domain {name!r} (gpart.runners.{name})") from None
    found = [v for v in vars(module).values() if isinstance(v, Domain) and v.name == name]
    if len(found) != 1:
        raise ConfigError(f"gpart.runners.{name} holds {len(found)} Domain objects, not one")
    return found[0]


@dataclass
class LoadedRun:
    """A finished run's selected model, rebuilt with ``requires_grad`` as it trained."""

    run: Path
    cfg: ExperimentConfig
    task: str
    domain: Domain
    processor: Any
    model: torch.nn.Module
    heads: list[str]
    results: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.results.get("method") or self.cfg.adapter.type)


def load_run(
    run: str | Path,
    domain: Domain | None = None,
    *,
    base_model: str | None = None,
    data_dir: str | None = None,
) -> LoadedRun:
    """Rebuild `run`'s selected model (``adapter/``) on its base model, through its domain.

    Args:
        run: a run directory (``seed_*``) with ``config.json`` and ``adapter/``.
        domain: the run's `Domain`; default: its runner's (`runner_domain`).
        base_model: the base model, if it moved (default: the run's own).
        data_dir: the data, if it moved (default: the run's own).

    Raises:
        ConfigError: no run there, an unfinished run, or a run of another domain.
    """
    run = Path(run)
    if not (run / "config.json").is_file():
        raise ConfigError(f"{run}: no config.json (not a run directory seed_*)")
    cfg = experiment_from_dict(read_json(run / "config.json")["config"])
    domain = domain or runner_domain(cfg.domain)
    if cfg.domain != domain.name:
        raise ConfigError(f"{run}: a {cfg.domain} run, not a {domain.name} one")
    if base_model:
        cfg.model.base_model = base_model
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    task = cfg.tasks[0]
    weights = weights_dir(run, "best")
    processor, base = domain.load_model(cfg, task)
    heads = domain.head_names(base)
    model = load_trained(base, cfg, weights, trainable=True).eval()
    results = read_json(run / RESULTS_FILENAME) if (run / RESULTS_FILENAME).exists() else {}
    return LoadedRun(run, cfg, task, domain, processor, model, heads, results)


def trainable_space(loaded: LoadedRun) -> list[tuple[str, torch.nn.Parameter]]:
    """The tensors of ``theta*``: what the run trained, outside the task head, in order.

    Raises:
        ConfigError: the run trained nothing outside its head (``--adapter_type head``).
    """
    space = [
        (name, p)
        for name, p in loaded.model.named_parameters()
        if p.requires_grad and not is_head_param(name, loaded.heads)
    ]
    if not space:
        raise ConfigError(
            f"{loaded.run}: the run trained nothing outside its head "
            f"({', '.join(loaded.heads) or 'none'}); there is no adapter vector to look at"
        )
    return space


def recorded_selection_loss(run: Path) -> float | None:
    """``eval_loss`` of the selected model as the run recorded it (``metrics.jsonl`` at
    ``results.json["selection"]["best_step"]``), or None where the run has none."""
    run = Path(run)
    if not (run / RESULTS_FILENAME).exists() or not (run / "metrics.jsonl").exists():
        return None
    step = read_json(run / RESULTS_FILENAME).get("selection", {}).get("best_step")
    for record in read_jsonl(run / "metrics.jsonl"):
        if step is not None and record.get("step") == step and "eval_loss" in record:
            return float(record["eval_loss"])
    return None


# --------------------------------------------------------------------------- the loss
class SelectionLoss:
    """The selection-split loss of `loaded`'s model as its parameters are now.

    Args:
        loaded: the run.
        max_samples: evaluate on the first this many examples of the selection split
            shuffled with the run's seed; None: all of them.
        batch_size: examples per batch; default: the run's evaluation batch size.

    Raises:
        ConfigError: the run's data has no selection split.
    """

    def __init__(
        self,
        loaded: LoadedRun,
        *,
        max_samples: int | None = DEFAULT_MAX_SAMPLES,
        batch_size: int | None = None,
    ) -> None:
        from transformers import Trainer
        from transformers.trainer_pt_utils import find_batch_size

        cfg, task, domain = loaded.cfg, loaded.task, loaded.domain
        selection = domain.load_splits(cfg, task).selection
        if selection is None:
            raise ConfigError(
                f"{loaded.run}: the run's data has no selection split "
                "(training.model_selection last); the landscape is the selection loss"
            )
        self.total_samples = len(selection)
        if max_samples is not None and len(selection) > max_samples:
            selection = selection.shuffle(seed=cfg.seed).select(range(max_samples))
        self.samples = len(selection)
        data = domain.prepare_dataset(selection, task, loaded.processor, cfg)
        # The run's arguments (precision, label smoothing, eval batch), minus what belongs
        # to training: its evaluation schedule, checkpoints and trackers.
        overrides: dict[str, Any] = {
            **domain.training_overrides(cfg),
            "report_to": [],
            "eval_strategy": "no",
            "save_strategy": "no",
            "load_best_model_at_end": False,
        }
        if batch_size is not None:
            overrides["per_device_eval_batch_size"] = batch_size
        # Trainer wants an output_dir; nothing is written there.
        self._scratch = tempfile.TemporaryDirectory(prefix="gpart-landscape-")
        args = training_arguments(
            cfg,
            task,
            domain.primary_metric(task),
            Path(self._scratch.name),
            greater_is_better=domain.greater_is_better(task),
            overrides=overrides,
        )
        self.trainer = Trainer(
            model=loaded.model, args=args, data_collator=domain.data_collator(loaded.processor)
        )
        self.model = self.trainer.model.eval()
        self.batches = list(self.trainer.get_eval_dataloader(data))  # collated once
        self.sizes = [find_batch_size(b) for b in self.batches]

    @torch.no_grad()
    def __call__(self) -> float:
        total = torch.zeros((), dtype=torch.float64, device=self.trainer.args.device)
        for batch, size in zip(self.batches, self.sizes, strict=True):
            loss, _, _ = self.trainer.prediction_step(self.model, batch, prediction_loss_only=True)
            total += loss.detach().double() * size  # one host sync per grid point, below
        return float(total / sum(self.sizes))

    def close(self) -> None:
        self._scratch.cleanup()


# --------------------------------------------------------------------------- directions
def filter_normalised_direction(
    star: Sequence[torch.Tensor], generator: torch.Generator
) -> list[torch.Tensor]:
    """A random direction with each filter's norm equal to that filter's in `star`.

    Li et al. (2018), Sec. 4: ``d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||`` for
    filter ``j`` of tensor ``i``. Rows of matrix-shaped tensors are filters; a vector is one
    filter. Drawn in fp32 on the CPU from `generator`, so a seed gives the same direction
    on every device.
    """
    out = []
    for t in star:
        d = torch.randn(t.shape, generator=generator, dtype=torch.float32)
        ref = t.detach().float().cpu()
        if t.dim() <= 1:
            d = d * (ref.norm() / d.norm().clamp_min(1e-12))
        else:
            rows, ref_rows = d.reshape(d.shape[0], -1), ref.reshape(ref.shape[0], -1)
            scale = ref_rows.norm(dim=1) / rows.norm(dim=1).clamp_min(1e-12)
            d = (rows * scale[:, None]).reshape(t.shape)
        out.append(d.to(device=t.device, dtype=t.dtype))
    return out


def landscape_of_run(
    loaded: LoadedRun,
    *,
    grid: int = 21,
    span: float = 0.5,
    seeds: int = 3,
    seed: int = 0,
    max_samples: int | None = DEFAULT_MAX_SAMPLES,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The loss surface around `loaded`'s ``theta*`` (module docstring), as plain data.

    Args:
        loaded: the run (`load_run`).
        grid: points per axis; odd puts ``theta*`` itself on the grid.
        span: the axes run over ``[-span, span]`` (in units of the filter-normalised
            directions, so 1 is a step as long as ``theta*`` itself, filter by filter).
        seeds: direction pairs averaged; pair ``k`` is drawn from seed ``seed + k``.
        seed: the first direction seed.
        max_samples: selection examples evaluated (`SelectionLoss`).
        batch_size: evaluation batch size (default: the run's).
        progress: a progress bar on stderr.

    Returns:
        ``{"run", "label", "task", "adapter_type", "seed", "grid", "span", "alphas", "betas",
        "max_samples", "dim", "samples",
        "total_samples", "centre_loss", "recorded_selection_loss", "surface" (mean over
        seeds, rows: alpha, columns: beta), "surfaces" (per seed), "direction_seeds"}``.
    """
    from tqdm.auto import tqdm

    if grid < 2 or span <= 0 or seeds < 1:
        raise ConfigError(
            f"landscape: needs --grid >= 2, --span > 0 and --seeds >= 1, got grid {grid}, "
            f"span {span}, seeds {seeds}"
        )
    space = trainable_space(loaded)
    params = [p for _, p in space]
    star = [p.detach().clone() for p in params]
    loss = SelectionLoss(loaded, max_samples=max_samples, batch_size=batch_size)
    axis = torch.linspace(-span, span, grid, dtype=torch.float64).tolist()
    surfaces: list[list[list[float]]] = []
    try:
        centre = loss()
        bar = tqdm(
            total=seeds * grid * grid,
            desc=f"landscape {loaded.run.parts[-3]}/{loaded.task}/{loaded.run.name}",
            disable=not progress,
            file=sys.stderr,
        )
        with torch.no_grad(), bar:
            for k in range(seeds):
                gen = torch.Generator().manual_seed(seed + k)
                d1 = filter_normalised_direction(star, gen)
                d2 = filter_normalised_direction(star, gen)
                surface = []
                for a in axis:
                    row = []
                    for b in axis:
                        for p, s, u, v in zip(params, star, d1, d2, strict=True):
                            p.copy_(s + a * u + b * v)
                        row.append(loss())
                        bar.update()
                    surface.append(row)
                surfaces.append(surface)
    finally:
        with torch.no_grad():
            for p, s in zip(params, star, strict=True):
                p.copy_(s)
        loss.close()
    mean = [[sum(s[i][j] for s in surfaces) / seeds for j in range(grid)] for i in range(grid)]
    return {
        "run": str(loaded.run),
        "label": loaded.label,
        "task": loaded.task,
        "adapter_type": loaded.cfg.adapter.type,
        "seed": loaded.cfg.seed,
        "grid": grid,
        "span": span,
        "alphas": axis,
        "betas": axis,
        "max_samples": max_samples,
        "dim": sum(p.numel() for p in params),
        "tensors": [name for name, _ in space],
        "samples": loss.samples,
        "total_samples": loss.total_samples,
        "centre_loss": centre,
        "recorded_selection_loss": recorded_selection_loss(loaded.run),
        "surface": mean,
        "surfaces": surfaces,
        "direction_seeds": [seed + k for k in range(seeds)],
    }


def landscapes(
    runs: Sequence[str | Path],
    *,
    labels: Sequence[str] | None = None,
    base_model: str | None = None,
    data_dir: str | None = None,
    domain: Domain | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`landscape_of_run` for each run, side by side: the JSON a landscape figure is drawn
    from (`gpart.results.plots.plot_landscape`). One model is in memory at a time.

    Args:
        runs: run directories (``seed_*``).
        labels: one panel title per run (default: each run's method).
        base_model, data_dir, domain: as for `load_run`.
        options: `landscape_of_run`'s keyword arguments (grid, span, seeds, ...).
    """
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"--labels: {len(labels)} labels for {len(runs)} runs; give one each")
    out: dict[str, Any] = {"figure": "landscape", "runs": []}
    for i, run in enumerate(runs):
        loaded = load_run(run, domain, base_model=base_model, data_dir=data_dir)
        entry = landscape_of_run(loaded, **options)
        if labels is not None:
            entry["label"] = labels[i]
        out["runs"].append(entry)
        del loaded
    if out["runs"]:  # the grid every panel shares
        first = out["runs"][0]
        out.update(
            grid=first["grid"],
            span=first["span"],
            alphas=first["alphas"],
            betas=first["betas"],
            max_samples=first["max_samples"],
            normalisation="filter-wise (Li et al. 2018): rows of matrices, whole vectors",
        )
    return out


# --------------------------------------------------------------------------- theta
def theta_values(loaded: LoadedRun) -> dict[str, Any]:
    """The trained vector of `loaded` (`trainable_space`, flattened) and, for GPart with
    the partition projection, the per-entry update ``s_j * theta_j`` of each group.

    Returns:
        ``{"run", "label", "task", "seed", "adapter_type", "theta": [...],
        "update": [...] or None}``.
    """
    space = trainable_space(loaded)
    theta = torch.cat([p.detach().float().flatten().cpu() for _, p in space])
    update = None
    cfg = loaded.cfg
    if cfg.adapter.type == "gpart" and getattr(cfg.adapter, "projection_type", None) == "partition":
        tuner = loaded.model.base_model  # the GPartModel under peft's wrapper
        thetas = getattr(tuner, THETA)  # the attribute is the checkpoint key's name
        (adapter,) = thetas.keys()
        scales = tuner.gpart_scales[adapter].detach().float().cpu()
        update = (scales * thetas[adapter].detach().float().cpu()).tolist()
    return {
        "run": str(loaded.run),
        "label": loaded.label,
        "task": loaded.task,
        "seed": cfg.seed,
        "adapter_type": cfg.adapter.type,
        "theta": theta.tolist(),
        "update": update,
    }
