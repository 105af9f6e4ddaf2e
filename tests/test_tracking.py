"""`training.report_to` reaches real trackers, offline, and each holds one run per run.

TensorBoard (a core dependency) is read back with its own event reader; MLflow (a local
SQLite store), trackio (local mode, ``TRACKIO_DIR``) and W&B (``WANDB_MODE=offline``) are
the project's extras and are skipped where not installed (``uv sync --extra mlflow
--extra trackio --extra wandb``). Every run is the fake domain's tiny one
(test_runners_core.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpart.runners import tracking
from test_runners_core import FakeDomain, _main, _runs


def _finished_run(out: Path) -> tuple[Path, dict, dict]:
    (run,) = _runs(out)
    return (
        run,
        json.loads((run / "results.json").read_text()),
        json.loads((run / "config.json").read_text()),
    )


def _check_parameters(params: dict, run: Path, results: dict, *, as_text: bool = False):
    """The parameters gpart logs, as the run's own files record them."""
    cast = str if as_text else (lambda v: v)
    assert params["data.fingerprint"] == results["data_fingerprint"]
    for name in ("trainable_adapter", "trainable_head", "total"):
        assert params[f"params.{name}"] == cast(results["params"][name])
    assert params["config.training.lr"] == cast(0.05)
    assert params["config.adapter.type"] == "full"
    assert params["run.dir"] == str(run) and params["run.name"] == run.parts[-3]


def test_tensorboard_gets_the_run_parameters_and_the_test_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "logs"
    assert _main(FakeDomain(), out, "--tasks", "sst2", "training.run_name", "demo") == 0
    run, results, _ = _finished_run(out)
    (logdir,) = (run / "runs").iterdir()  # one writer: the held end closes it once
    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()

    def text(tag: str) -> str:
        (event,) = events.Tensors(f"{tag}/text_summary")
        return event.tensor_proto.string_val[0].decode()

    _check_parameters(json.loads(text("gpart/run_parameters")), run, results)
    assert json.loads(text("args"))["run_name"] == "demo/sst2/seed_42"
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "eval/accuracy", "test/accuracy"} <= set(scalars)
    (test_acc,) = events.Scalars("test/accuracy")
    assert test_acc.value == pytest.approx(results["test"]["accuracy"])


def test_none_reports_nowhere(tmp_path):
    out = tmp_path / "logs"
    assert _main(FakeDomain(), out, "--tasks", "sst2", "training.report_to", "none") == 0
    run, _, saved = _finished_run(out)
    assert not (run / "runs").exists()
    assert saved["config"]["training"]["report_to"] == ["none"]


def test_an_unknown_or_missing_tracker_is_one_line_before_anything_runs(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "logs"
    with pytest.raises(SystemExit) as exc:
        _main(FakeDomain(), out, "--tasks", "sst2", "training.report_to", "mlfow")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: training.report_to: 'mlfow' is no tracker")
    assert "did you mean 'mlflow'" in err and len(err.splitlines()) == 1
    # A known tracker whose package is missing names the extra that installs it.
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", list)
    with pytest.raises(SystemExit) as exc:
        _main(FakeDomain(), out, "--tasks", "sst2", "task.sst2.report_to", "mlflow")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "task.sst2.report_to: mlflow is not installed here; uv sync --extra mlflow" in err
    assert not out.exists()


def test_a_failing_tracker_warns_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    def broken(callback, params):
        raise OSError("disk full")

    monkeypatch.setattr(tracking, "_log_tensorboard", broken)
    out = tmp_path / "logs"
    assert _main(FakeDomain(), out, "--tasks", "sst2") == 0
    err = capsys.readouterr().err
    assert "warning: TensorBoardCallback: could not log the run's parameters" in err
    assert "OSError: disk full" in err
    _finished_run(out)


def test_mlflow_local_store_holds_one_run_with_parameters_and_test_metrics(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "gpart-tests")
    out = tmp_path / "logs"
    argv = ["--tasks", "sst2", "training.report_to", "mlflow", "training.run_name", "demo"]
    assert _main(FakeDomain(), out, *argv) == 0
    run, results, _ = _finished_run(out)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("gpart-tests")
    (tracked,) = client.search_runs([experiment.experiment_id])  # the test eval joined it
    assert tracked.info.run_name == "demo/sst2/seed_42"
    assert tracked.info.status == "FINISHED"
    _check_parameters(tracked.data.params, run, results, as_text=True)
    assert tracked.data.metrics["test_accuracy"] == pytest.approx(results["test"]["accuracy"])
    history = client.get_metric_history(tracked.info.run_id, "eval_accuracy")
    assert len(history) == 2  # one selection evaluation per epoch


def test_wandb_offline_run_holds_the_parameters(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "logs"
    argv = ["--tasks", "sst2", "training.report_to", "wandb"]
    try:
        assert _main(FakeDomain(), out, *argv) == 0
        run, results, _ = _finished_run(out)
        # transformers' callback leaves the W&B run open after training (it finishes with
        # the process or the next run): read it there.
        assert wandb.run is not None
        assert wandb.run.name == f"{run.parts[-3]}/sst2/seed_42"  # the sweep's run name
        _check_parameters(dict(wandb.run.config), run, results)
        assert wandb.run.summary["test/accuracy"] == pytest.approx(results["test"]["accuracy"])
    finally:
        wandb.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


TRACKIO_SCRIPT = """
import json, sys
sys.path[:0] = [{tests!r}]
from pathlib import Path
from test_runners_core import FakeDomain, _main
argv = ["--tasks", "sst2", "training.report_to", "trackio", "training.run_name", "demo"]
assert _main(FakeDomain(), Path({out!r}), *argv) == 0
import trackio
from trackio.sqlite_storage import SQLiteStorage
(tracked,) = list(trackio.Api().runs("huggingface"))  # transformers' default project
logs = SQLiteStorage.get_logs("huggingface", tracked.name)
print(json.dumps({{"name": tracked.name, "config": tracked.config,
                  "test": [row["test/accuracy"] for row in logs if "test/accuracy" in row]}}))
"""


def test_trackio_local_run_holds_parameters_and_test_metrics(tmp_path):
    pytest.importorskip("trackio")
    # trackio reads TRACKIO_DIR once, at import: a fresh interpreter keeps it off ~/.cache.
    out = tmp_path / "logs"
    script = TRACKIO_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    run, results, _ = _finished_run(out)
    assert seen["name"] == "demo/sst2/seed_42"
    _check_parameters(seen["config"], run, results)
    assert seen["test"] == [pytest.approx(results["test"]["accuracy"])]
