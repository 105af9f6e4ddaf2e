"""Run identity: the name every run directory of a sweep shares.

``<output_dir>/<run-name>/<task>/seed_<seed>/``, with the run name
``<adapter>_<key hparams>_<hash of sweep_identity>`` (`gpart.results.rundir.run_name`). Light
on purpose (configs and results only), so tools that list or collect runs need no torch.

The identity carries a version (`gpart.configs.legacy`): new runs are named under the
current one, and `find_run_dir` also finds a run written under an older one.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from gpart.configs import ExperimentConfig
from gpart.configs.legacy import IDENTITY_VERSION, V1_NAME_KEYS, to_v1_adapter
from gpart.configs.schema import (
    IDENTITY_IF_CHANGED,
    LEGACY_IDENTITY,
    NOT_IDENTITY,
    TrainingConfig,
)
from gpart.results.rundir import run_dir, run_name


def sweep_identity(cfg: ExperimentConfig, version: int = IDENTITY_VERSION) -> dict[str, Any]:
    """What identifies a sweep: the resolved config minus what varies inside one sweep.

    Leaves out the tasks and seed of this invocation, seed-following fields (e.g. GPart's
    `proj_seed` when it follows `--seed`), where data and outputs live, and the per-task
    *preset* values (fixed by adapter and size, which are in the identity); per-task values
    given on the command line stay in. So `--tasks sst2` and `--tasks rte` with the same
    settings share a run name, and any hyperparameter change gives a new one. Fields marked
    `IDENTITY_IF_CHANGED` (added after names were in use) are left out while at their
    default, so adding a field does not rename existing runs: mark every field you add
    (tests/test_run_identity.py pins names and fails until you do). Fields marked
    `NOT_IDENTITY` (where a run is reported: ``training.report_to``, ``training.run_name``)
    are left out at any value, also as ``task.`` / ``task.<task>.`` overrides.

    `version` 1 gives what names hashed before identities carried a version: the adapter
    keys as version 1 spelled them and no version number (`gpart.configs.legacy`).
    """
    d = cfg.to_dict(effective=False)
    for key in ("tasks", "seed", "output_dir", "sources"):
        d.pop(key, None)
    d["data"].pop("data_dir", None)
    d["data"].pop("train_file", None)  # a location too; the data fingerprint is checked
    for key, label in cfg.sources.items():
        section, _, name = key.partition(".")
        if label == "seed" and section == "adapter":
            d["adapter"].pop(name, None)
    for section in ("model", "adapter", "training", "data"):
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            # Fields added later enter the identity only when changed: old names stay valid.
            if f.metadata.get(IDENTITY_IF_CHANGED) and getattr(obj, f.name) == f.default:
                d[section].pop(f.name, None)
    reporting = {f.name for f in dataclasses.fields(TrainingConfig) if f.metadata.get(NOT_IDENTITY)}
    for values in (d["training"], d["task"], *d["per_task"].values()):
        for name in reporting:
            values.pop(name, None)
    per_task: dict[str, dict[str, Any]] = {}
    for task, values in d.pop("per_task", {}).items():
        kept = {
            k: v
            for k, v in values.items()
            if not cfg.sources.get(f"task.{task}.{k}", "").startswith("task preset")
        }
        if kept:
            per_task[task] = kept
    d["per_task_cli"] = per_task
    d.update(copy.deepcopy(LEGACY_IDENTITY))  # removed sections, as they were always hashed
    if version == 1:
        d["adapter"] = to_v1_adapter(cfg.adapter.type, d["adapter"])
    else:
        d["identity_version"] = version
    return d


# The readable part of a name: (label, adapter key) for each adapter value shown, in order.
NAME_KEYS = (("d", "d"), ("d", "theta_d_length"), ("r", "r"))


def key_hparams(cfg: ExperimentConfig, version: int = IDENTITY_VERSION) -> dict[str, Any]:
    """The few values worth reading in a run directory's name."""
    section = dataclasses.asdict(cfg.adapter)
    if version == 1:
        section = to_v1_adapter(cfg.adapter.type, section)
        shown = tuple((key, key) for key in V1_NAME_KEYS)
    else:
        shown = NAME_KEYS
    out: dict[str, Any] = {}
    for label, key in shown:
        if key in section:
            out[label] = section[key]
    lr = _run_wide_lr(cfg)
    if lr is not None:
        out["lr"] = lr
    return out


def _run_wide_lr(cfg: ExperimentConfig) -> float | None:
    """The learning rate every task of this sweep trains at, or None when it varies by task.

    The name must say what ran: where task presets set per-task learning rates (LoRA on
    GLUE) `training.lr` is not what any task uses, so the name leaves lr out (the hash
    still tells sweeps apart). Decided over the domain's presets, not just this
    invocation's tasks, so `--tasks sst2` and `--tasks rte` of one sweep share a name.
    """
    from gpart.configs.presets import get_presets
    from gpart.configs.resolve import CLI

    lrs = {cfg.effective_training(t).lr for t in cfg.tasks}
    if len(lrs) != 1 or any(v.lr is not None for v in cfg.per_task.values()):
        return None
    if cfg.sources.get("training.lr") != CLI and cfg.task.lr is None:
        # A command-line training.lr / task.lr replaces every task preset's lr.
        presets = get_presets(cfg.domain).task
        size = cfg.model.model_size
        if any(
            "lr" in values
            for (adapter, _, s), values in presets.items()
            if adapter == cfg.adapter.type and s == size
        ):
            return None
    return lrs.pop()


def sweep_run_name(cfg: ExperimentConfig, version: int = IDENTITY_VERSION) -> str:
    """``<adapter>_<key hparams>_<hash of sweep_identity>``, under identity `version`."""
    return run_name(cfg.adapter.type, key_hparams(cfg, version), sweep_identity(cfg, version))


def find_run_dir(cfg: ExperimentConfig, task: str) -> Path:
    """The run directory of `task` for `cfg.seed`: the one that exists, named under the
    newest identity version that has one, else the current version's (to be created)."""
    current = run_dir(cfg.output_dir, sweep_run_name(cfg), task, cfg.seed)
    if current.exists():
        return current
    for version in range(IDENTITY_VERSION - 1, 0, -1):
        old = run_dir(cfg.output_dir, sweep_run_name(cfg, version), task, cfg.seed)
        if old.exists():
            return old
    return current
