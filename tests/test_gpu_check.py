"""The GPU check's helpers (benchmarks/): the stand-in decoder and the script's syntax.
The check itself needs a CUDA machine (CONTRIBUTING.md)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stand_in():
    spec = importlib.util.spec_from_file_location(
        "stand_in_decoder", ROOT / "benchmarks" / "stand_in_decoder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stand_in_covers_its_tokenizer_and_its_answers_check(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    from gpart.evaluation.eval_sets import load_local_items
    from gpart.evaluation.scoring import score_completions

    out = tmp_path / "standin"
    assert _stand_in().main(["--model_config", "qwen2-tiny", "--out", str(out), "--rows",
                             "12", "--eval_rows", "5"]) == 0  # fmt: skip
    tok = AutoTokenizer.from_pretrained(out / "model")
    config = AutoConfig.from_pretrained(out / "model")
    # every id the runner can feed (the pad token the Qwen2 class adds included) has a row
    assert len(tok) <= config.vocab_size and config.eos_token_id == tok.eos_token_id
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == 12 and all(set(r) == {"query", "response"} for r in train)
    items = load_local_items("gsm8k", out / "gsm8k.jsonl")
    assert len(items) == 5
    # the worked answers (as a model trained on train.jsonl would write them) check correct
    answers = [json.loads(line)["answer"].split("\n####")[0] for line in
               (out / "gsm8k.jsonl").read_text().splitlines()]  # fmt: skip
    scores = score_completions(
        "gsm8k", zip(answers, [it.ground_truth for it in items], strict=True)
    )
    assert scores.summary["correct"] == 5


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gpu_check_script_parses():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
