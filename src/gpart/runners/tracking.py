"""Experiment trackers: ``training.report_to`` and ``training.run_name`` for every runner.

The trackers are transformers' own integrations (`TrainingArguments.report_to`: their
callbacks log the training loss, every evaluation and the test metrics, and each reads its
own environment: ``MLFLOW_TRACKING_URI``, ``WANDB_MODE=offline``, ``TRACKIO_DIR``, ...).
What this module adds is what a tracker cannot know from `TrainingArguments`: the run's
parameters as gpart resolved them, logged once per run on the main process
(`RunParamsCallback`):

    config.<section>.<field>   the resolved single-task config (`ExperimentConfig.to_dict`)
    data.fingerprint           the digest of the data's fingerprint (`gpart.data.fingerprint`)
    params.<count>             the trainable-parameter counts (`gpart.params`)
    run.name, run.dir          the sweep's run name and the run directory, to find the files

A run's test evaluation comes after `Trainer.train`, whose end is where the integrations
close their run (MLflow's callback ends it, so the test metrics would open a second,
nameless MLflow run); `trackers_open_until_done` holds those ends back until the test
metrics are logged, so one tracker run holds the whole run.

tensorboard gets them as one text summary, mlflow as run parameters, wandb and trackio as
the run's config. Other integrations (comet_ml, neptune, clearml, ...) get what
transformers gives them (its arguments and the model's config).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

from gpart.configs import ConfigError, ExperimentConfig
from gpart.configs.errors import did_you_mean

# The package each tracker needs and the project extra that installs it (pyproject.toml).
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}
# Integrations whose tracker `RunParamsCallback` logs gpart's parameters to.
PARAMETER_TRACKERS = ("tensorboard", "mlflow", "wandb", "trackio")


def check_report_to(cfg: ExperimentConfig) -> None:
    """Fail before any run when ``training.report_to`` names a tracker that cannot run here.

    The names are transformers' (`INTEGRATION_TO_CALLBACK`), and a tracker whose package is
    missing is named with the extra that installs it; otherwise transformers would stop
    inside `Trainer` with a traceback, per run.

    Raises:
        ConfigError: an unknown name (with the closest one) or a tracker not installed.
    """
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    available = set(get_available_reporting_integrations())
    for task in cfg.tasks:
        key = cfg.effective_keys(task)["report_to"]
        for name in cfg.effective_training(task).report_to:
            if name in ("none", "all"):
                continue
            if name not in INTEGRATION_TO_CALLBACK:
                known = [*INTEGRATION_TO_CALLBACK, "none", "all"]
                raise ConfigError(
                    f"{key}: {name!r} is no tracker transformers knows{did_you_mean(name, known)}"
                    f" (known: {', '.join(known)})"
                )
            if name not in available:
                extra = EXTRAS.get(name)
                how = f"uv sync --extra {extra}" if extra else f"install the {name} package"
                raise ConfigError(f"{key}: {name} is not installed here; {how}, or drop it")


def tracker_run_name(cfg: ExperimentConfig, sweep_name: str, task: str) -> str:
    """``<training.run_name or the sweep's run name>/<task>/seed_<seed>`` (single-task `cfg`).

    A sweep makes one run per task and seed; the suffix keeps their tracker runs apart and
    mirrors the run directory ``<output_dir>/<run-name>/<task>/seed_<seed>/``.
    """
    return f"{cfg.training.run_name or sweep_name}/{task}/seed_{cfg.seed}"


def run_parameters(
    cfg: ExperimentConfig,
    *,
    fingerprint_digest: str,
    params: Mapping[str, Any],
    run_name: str,
    run_dir: str,
) -> dict[str, Any]:
    """The flat ``{key: scalar}`` of one run that `RunParamsCallback` logs (module docstring).

    Lists and other non-scalars are written as JSON, so every tracker stores them alike.
    """
    config = cfg.to_dict(effective=False)
    config.pop("sources", None)  # where values came from, not what they are
    out: dict[str, Any] = {}
    _flatten("config", config, out)
    out["data.fingerprint"] = fingerprint_digest
    for name, value in params.items():
        if isinstance(value, int):
            out[f"params.{name}"] = value
    out["run.name"] = run_name
    out["run.dir"] = run_dir
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif value is None or isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    else:
        out[prefix] = json.dumps(value)


# --------------------------------------------------------------------------- the callback
def _log_tensorboard(callback: Any, params: dict[str, Any]) -> None:
    writer = getattr(callback, "tb_writer", None)
    if writer is not None:
        writer.add_text("gpart/run_parameters", json.dumps(params, indent=1))
        writer.flush()


def _log_mlflow(callback: Any, params: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return
    # MLflow stores parameters as strings and takes at most 100 per call (the limit
    # transformers' MLflowCallback chunks by, mlflow.utils.validation).
    limit = mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
    items = [(k, "None" if v is None else v) for k, v in params.items()]
    for i in range(0, len(items), limit):
        mlflow.log_params(dict(items[i : i + limit]))


def _log_wandb(callback: Any, params: dict[str, Any]) -> None:
    import wandb

    if wandb.run is not None:
        wandb.run.config.update(params, allow_val_change=True)


def _log_trackio(callback: Any, params: dict[str, Any]) -> None:
    import trackio

    trackio.config.update(params, allow_val_change=True)


def _loggers() -> list[tuple[type, Callable[[Any, dict[str, Any]], None]]]:
    from transformers.integrations import (
        MLflowCallback,
        TensorBoardCallback,
        TrackioCallback,
        WandbCallback,
    )

    return [
        (TensorBoardCallback, _log_tensorboard),
        (MLflowCallback, _log_mlflow),  # DagsHub's callback is an MLflowCallback too
        (WandbCallback, _log_wandb),
        (TrackioCallback, _log_trackio),
    ]


class RunParamsCallback(TrainerCallback):
    """Log a run's parameters (`run_parameters`) to every tracker the `Trainer` reports to.

    Added after the integrations' callbacks, so at ``on_train_begin`` each tracker has
    started its run (they start theirs in their own ``on_train_begin``). Only the main
    process logs, and only once, also when `Trainer.train` is called again.

    Args:
        params: what to log (`run_parameters`).
        callbacks: the trainer's callbacks (``trainer.callback_handler.callbacks``), among
            them the integrations' to log through.
    """

    def __init__(self, params: dict[str, Any], callbacks: list[Any]) -> None:
        self.params = params
        self.callbacks = callbacks
        self.logged = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.logged or not state.is_world_process_zero:
            return
        self.logged = True
        for callback in self.callbacks:
            for cls, log in _loggers():
                if isinstance(callback, cls):
                    try:
                        log(callback, self.params)
                    except Exception as exc:  # noqa: BLE001 -- a tracker must not stop a run
                        print(
                            f"warning: {type(callback).__name__}: could not log the run's "
                            f"parameters ({type(exc).__name__}: {exc})",
                            file=sys.stderr,
                        )
                    break


@contextmanager
def trackers_open_until_done(trainer: Any) -> Iterator[None]:
    """Hold back the integrations' ``on_train_end`` until the block has finished.

    Inside the block `Trainer.train` ends and the test splits are evaluated; the trackers'
    runs stay open through both and are closed, with the call `Trainer` made at the end of
    training, when the block finishes. If the block raises, nothing is replayed: the
    trackers are left as a crash inside `Trainer.train` leaves them.
    """
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    integrations = tuple(INTEGRATION_TO_CALLBACK.values())
    held = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, integrations)]
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def holder(callback: Any) -> Callable[..., None]:
        def on_train_end(*args: Any, **kwargs: Any) -> None:
            calls.append((callback, args, kwargs))

        return on_train_end

    for callback in held:  # an instance attribute shadows the class's method
        callback.on_train_end = holder(callback)
    try:
        yield
    finally:
        for callback in held:
            del callback.on_train_end
    for callback, args, kwargs in calls:
        callback.on_train_end(*args, **kwargs)
