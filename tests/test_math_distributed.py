"""GPart's one shared `theta` trains the same under DDP as in one process.

The real path: ``accelerate launch --config_file configs/accelerate/ddp.yaml`` on
``finetune_metamath.py`` with two CPU processes (gloo), against one plain process, on a
tiny Llama saved to a temporary directory. Both see the same global batches:

* per-device batch 2 x 2 processes against 4 x 1 process, no accumulation, so each
  optimizer step sees 4 examples either way;
* the order: the math runner groups batches by length (transformers'
  ``LengthGroupedSampler``), whose mega-batches and "longest batch first" swap depend on the
  *per-device* batch size, so with uneven lengths 2 x 2 and 4 x 1 would group other
  examples into a step. Every example is made the same length (``training.max_seq_length``
  below the shortest example, ``data.length_policy truncate``): the length sort is then the
  identity and both runs take the same seeded permutation, split by accelerate's batch
  sharding (process i takes per-device batches i, i + 2, ...), i.e. the same 4 examples per
  step;
* the loss: response tokens only, so the per-process token counts differ; transformers
  normalises by the global count (``average_tokens_across_devices``), which is what makes
  2 x 2 equal to 4 x 1 at all;
* no randomness inside a step: adapter dropout 0, same seed (theta starts at 0).

The DDP case runs twice: on the float base, and on its NF4 quantization (QLoRA's setup,
``model.quantization nf4``), where every process holds the frozen 4-bit base.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from math_env import BNB_WIDE, rows, write_jsonl, write_tiny_decoder

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "src" / "scripts" / "math" / "finetune_metamath.py"
DDP_YAML = ROOT / "configs" / "accelerate" / "ddp.yaml"

SETTINGS = ["--adapter_type", "gpart", "adapter.d", "64", "adapter.gpart_dropout", "0",
            "training.epochs", "1", "training.grad_accum", "1", "training.num_workers", "0",
            "training.precision", "fp32", "training.max_seq_length", "24",
            "data.heldout_samples", "8", "training.gradient_checkpointing", "false",
            "training.lr", "1e-2", "training.warmup_ratio", "0",
            "training.save_total_limit", "1"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _theta(run: Path):
    from safetensors.torch import load_file

    (theta,) = load_file(run / "adapter" / "adapter_model.safetensors").values()
    return theta


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_ddp_two_processes_train_the_same_theta_as_one(tmp_path, quantization):
    # nf4: QLoRA-style, the frozen base in bitsandbytes' 4-bit storage on every process.
    wide = {}
    if quantization != "none":
        pytest.importorskip("bitsandbytes")
        wide = BNB_WIDE
    model = write_tiny_decoder(tmp_path / "llama", "llama", **wide)
    write_jsonl(tmp_path / "data" / "metamathqa" / "train.jsonl", rows(20))
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # CPU and gloo, also on a machine with GPUs
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GPART_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }

    def argv(out: str, batch: int) -> list[str]:
        return ["--base_model", str(model), "--data_dir", str(tmp_path / "data"),
                "--output_dir", str(tmp_path / out), *SETTINGS,
                "model.quantization", quantization,
                "training.batch_size", str(batch)]  # fmt: skip

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_YAML),
              "--num_processes", "2", "--main_process_port", str(_free_port()),
              str(SCRIPT), "--export_merged", str(tmp_path / "merged"), *argv("ddp", 2)]  # fmt: skip
    single = [sys.executable, str(SCRIPT), *argv("one", 4)]
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for cmd in (launch, single)]  # fmt: skip
    for proc in procs:
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-3000:]

    runs = {}
    for name in ("ddp", "one"):
        (path,) = (tmp_path / name).rglob("results.json")
        runs[name] = (path.parent, json.loads(path.read_text()))
    (ddp, r_ddp), (one, r_one) = runs["ddp"], runs["one"]
    # the premise: two processes really trained, every example was cut to one length,
    # and both took the same 3 optimizer steps of 4 examples
    assert r_ddp["world_size"] == 2 and r_one["world_size"] == 1
    assert r_ddp["distributed_type"] == "MULTI_CPU" and r_one["distributed_type"] == "NO"
    assert r_ddp["selection"]["train_truncated"] == r_ddp["selection"]["train_size"] == 12
    assert r_ddp["selection"]["last_step"] == r_one["selection"]["last_step"] == 3
    # only the main process wrote: one of each file, one line per evaluation
    assert len((ddp / "metrics.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in ddp.iterdir() if p.is_file()) == sorted(
        p.name for p in one.iterdir() if p.is_file()
    )

    # --export_merged: the main process merged and saved while the other one waited
    assert (tmp_path / "merged" / "model.safetensors").is_file()

    a, b = _theta(one), _theta(ddp)
    assert a.shape == b.shape == (64,)
    # theta moved by ~3 Adam steps of lr 1e-2 (|theta| ~ 1e-2); another batch in any step
    # would move entries by ~lr. The runs differ only in float summation order (the
    # all-reduce of two half-batch gradients against one sum), ~1e-7 relative, which
    # Adam passes through as ~1e-9 absolute: atol 1e-6 is 1e-4 of one step.
    assert a.abs().max() > 1e-3
    assert (a - b).abs().max().item() < 1e-6, (a - b).abs().max().item()
    assert r_ddp["test"]["loss"] == pytest.approx(r_one["test"]["loss"], abs=1e-5)


def test_saving_from_a_gathered_state_dict_writes_the_same_files(tmp_path):
    """Under FSDP the runner saves from the gathered full state dict (`save_trained_from`);
    that path writes exactly what saving the model's own tensors writes, for a peft adapter
    (GPart's theta) and for plain trainable tensors (bitfit-like)."""
    import torch
    from peft import get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from gpart import GPartConfig
    from gpart.runners.common import TRAINABLE_FILE, save_trained

    path = write_tiny_decoder(tmp_path / "m", "llama")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), GPartConfig(d=32))
    with torch.no_grad():
        model.base_model.gpart_theta_d["default"].normal_()
    save_trained(model, tmp_path / "own")
    save_trained(model, tmp_path / "gathered", state_dict=model.state_dict())
    own = load_file(tmp_path / "own" / "adapter_model.safetensors")
    gathered = load_file(tmp_path / "gathered" / "adapter_model.safetensors")
    assert own.keys() == gathered.keys() == {"base_model.gpart_theta_d"}
    assert torch.equal(own["base_model.gpart_theta_d"], gathered["base_model.gpart_theta_d"])

    plain = AutoModelForCausalLM.from_pretrained(path).requires_grad_(False)
    plain.model.norm.weight.requires_grad_(True)
    state = {k: v + 1 for k, v in plain.state_dict().items()}  # the gathered values win
    save_trained(plain, tmp_path / "plain", state_dict=state)
    saved = load_file(tmp_path / "plain" / TRAINABLE_FILE)
    assert saved.keys() == {"model.norm.weight"}
    assert torch.equal(saved["model.norm.weight"], state["model.norm.weight"])


@pytest.mark.slow
def test_fsdp_two_processes_train_the_same_theta_as_one(tmp_path):
    """FSDP1 full-shard with peft's wrap policy (tests/fsdp_worker.py) on two gloo CPU
    processes: theta lives in the root unit, sharded at rest (rank 0 holds less than all
    of it), whole during each forward; after 3 AdamW steps it equals one process's theta,
    and the adapter saved from the gathered state dict is exactly theta."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import fsdp_worker

    model = write_tiny_decoder(tmp_path / "llama", "llama")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests")}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), str(ROOT / "tests" / "fsdp_worker.py"),
           str(model), str(tmp_path / "fsdp")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip

    torch.manual_seed(0)
    one = fsdp_worker.build(str(model))
    fsdp_worker.train(one)
    want = one.base_model.gpart_theta_d["default"].detach()

    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-3000:]
    assert int((tmp_path / "fsdp" / "local_theta_numel.txt").read_text()) < fsdp_worker.D
    got = _theta(tmp_path / "fsdp")
    assert want.abs().max() > 1e-3
    # same argument as for DDP: only the summation order differs (measured 2.8e-8)
    assert (got - want).abs().max().item() < 1e-6, (got - want).abs().max().item()
    base = AutoModelForCausalLM.from_pretrained(model)
    loaded = PeftModel.from_pretrained(base, tmp_path / "fsdp" / "adapter")
    assert torch.equal(loaded.base_model.gpart_theta_d["default"].detach(), got)


@pytest.mark.parametrize("is_main", [True, False])
def test_under_fsdp_every_process_gathers_and_only_the_main_one_writes(tmp_path, is_main):
    """Gathering a sharded state dict is a collective: a process that skipped it would
    leave the others waiting forever. So every process gathers; only the main one saves."""
    from types import SimpleNamespace

    import torch
    from torch import nn

    from gpart.runners.common import TRAINABLE_FILE, save_trained_from

    inner = nn.Linear(2, 2)
    calls = []

    def get_state_dict(model):
        calls.append(model)
        return {k: torch.full_like(v, 7.0) for k, v in inner.state_dict().items()}

    wrapped = object()  # what Trainer holds under FSDP: not the model itself
    accelerator = SimpleNamespace(get_state_dict=get_state_dict, unwrap_model=lambda m: inner)
    trainer = SimpleNamespace(model=wrapped, is_fsdp_enabled=True, accelerator=accelerator)
    save_trained_from(trainer, tmp_path / "adapter", is_main=is_main)
    assert calls == [wrapped]
    if is_main:
        from safetensors.torch import load_file

        saved = load_file(tmp_path / "adapter" / TRAINABLE_FILE)
        assert set(saved) == {"weight", "bias"} and bool((saved["weight"] == 7).all())
    else:
        assert not (tmp_path / "adapter").exists()
