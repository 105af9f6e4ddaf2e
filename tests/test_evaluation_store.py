"""The prediction store (`gpart.evaluation.store`): an evaluation interrupted by an
earlier ``eval_math.py`` (``tests/data/eval_partial_v1``, written before the store had a
module of its own) resumes, keeping the completions it saved, and a finished one leaves
the files the collector reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gpart.evaluation.store import PartialPredictions, dataset_dir
from gpart.runners.math_eval import main
from math_env import write_tiny_decoder

FIXTURE = Path(__file__).parent / "data" / "eval_partial_v1"
# The command that wrote the fixture, in today's spelling (paths relative, as then).
ARGV = ["--base_model", "model", "--dataset", "gsm8k", "--output_dir", "out",
        "data_file.gsm8k", "gsm8k.jsonl", "max_new_tokens", "12", "batch_size", "2",
        "save_every", "2", "device", "cpu"]  # fmt: skip


def _predictions(root: Path) -> list[dict]:
    lines = (dataset_dir(root, "gsm8k") / "predictions.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_an_evaluation_interrupted_by_the_earlier_code_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_tiny_decoder(Path("model"), "llama")  # seed 0: the model that wrote the fixture
    shutil.copy(FIXTURE / "gsm8k.jsonl", "gsm8k.jsonl")
    shutil.copytree(FIXTURE / "partial", dataset_dir("out", "gsm8k") / "partial")
    saved = json.loads((FIXTURE / "partial" / "chunk-0000000.json").read_text())["rows"]
    store = PartialPredictions(dataset_dir("out", "gsm8k"), {})
    assert sorted(store.done()) == [0, 2]

    assert main(ARGV) == 0
    assert "gsm8k: resuming: 2/4 problems generated before" in capsys.readouterr().out
    records = _predictions(Path("out"))
    for position, completion, tokens in saved:  # taken from the old chunk, not regenerated
        assert records[position]["completion"] == completion
        assert records[position]["generated_tokens"] == tokens
    results = json.loads((dataset_dir("out", "gsm8k") / "results.json").read_text())
    assert results["resumed"] == 2 and results["total"] == 4
    assert not (dataset_dir("out", "gsm8k") / "partial").exists()

    # the rest is what an uninterrupted run generates, and so is the whole file
    fresh = [a if a != "out" else "fresh" for a in ARGV]
    assert main(fresh) == 0
    assert _predictions(Path("fresh")) == records


def test_other_settings_are_refused_and_leave_the_old_chunks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_tiny_decoder(Path("model"), "llama")
    shutil.copy(FIXTURE / "gsm8k.jsonl", "gsm8k.jsonl")
    partial = dataset_dir("out", "gsm8k") / "partial"
    shutil.copytree(FIXTURE / "partial", partial)
    before = {p.name: p.read_bytes() for p in partial.iterdir()}
    capsys.readouterr()  # the model's saving progress
    with pytest.raises(SystemExit) as exc:
        main([*ARGV, "batch_size", "4"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert "batch_size 2 -> 4" in err and "chunk_size 2 -> 4" in err
    assert {p.name: p.read_bytes() for p in partial.iterdir()} == before
