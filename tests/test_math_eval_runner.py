"""GSM8K / MATH evaluation by generation (`gpart.runners.math_eval`, ``eval_math.py``),
offline: tiny Llama / Qwen2 decoders generate end to end from local files in every shape,
batched generation equals one prompt at a time, stop markers cut, finished evaluations
skip, ``--rescore`` reproduces the accuracy, bad input fails in one line, and a trained
run directory is evaluated with its own template. SmolLM2-135M-Instruct answers real GSM8K
questions in the slow test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gpart.evaluation import check_answer
from gpart.evaluation.eval_sets import load_local_items
from gpart.evaluation.generate import cut_at_stop, generate_hf, length_order
from gpart.runners import math as train_runner
from gpart.runners.math_eval import main
from math_env import rows, write_jsonl, write_tiny_decoder

FIELDS = ("index", "dataset", "question", "prompt", "completion", "prediction", "ground_truth",
          "correct")  # fmt: skip
SETTINGS = ("model", "adapter", "template", "max_new_tokens", "batch_size", "max_samples",
            "backend", "dtype")  # fmt: skip
SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"

QUESTIONS = ["What is 12 + 30?", "What is 1 + 2?", "What is 40 + 41 and then 3 more?",
             "What is 11 + 12?", "What is 20 + 25 plus 10 plus 7?"]  # fmt: skip
ANSWERS = ["42", "3", "84", "23", "62"]
MATH_ANSWERS = [r"\frac{1}{2}", "3", r"\sqrt{2}", "23", "(1,2)"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalmath")
    q, a, m = QUESTIONS, ANSWERS, MATH_ANSWERS
    return {
        "llama": write_tiny_decoder(root / "llama", "llama"),
        "qwen2": write_tiny_decoder(root / "qwen2", "qwen2"),
        "gsm8k": write_jsonl(root / "gsm8k.jsonl", [
            {"question": x, "answer": f"Add them.\n#### {y}"} for x, y in zip(q, a, strict=True)]),
        "math": write_jsonl(root / "math.jsonl", [
            {"problem": x, "solution": f"So it is $\\boxed{{{y}}}$.", "level": "Level 1"}
            for x, y in zip(q, m, strict=True)]),
        "math500": write_jsonl(root / "math500.jsonl", [
            {"problem": x, "solution": "ignored \\boxed{0}", "answer": y} for x, y in zip(q, m, strict=True)]),
        "metamath": write_jsonl(root / "metamath.jsonl", [
            {"instruction": x, "output": f"The answer is: \\boxed{{{y}}}"} for x, y in zip(q, m, strict=True)]),
    }  # fmt: skip


def _eval(env, out, *overrides, flags=(), model="llama", dataset="gsm8k", data=None):
    argv = ["--base_model", str(env[model]), "--dataset", dataset, "--output_dir", str(out),
            *flags, f"data_file.{dataset}", str(env[data or dataset]), "max_new_tokens", "12",
            "batch_size", "2", "device", "cpu", *overrides]  # fmt: skip
    return main(argv)


def _read(out: Path, dataset: str) -> tuple[list[dict], dict]:
    folder = out / "eval" / dataset
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines], json.loads((folder / "results.json").read_text())


def _check_complete(records: list[dict], results: dict, dataset: str, n: int) -> None:
    assert [r["index"] for r in records] == list(range(n))
    for r in records:
        assert all(k in r for k in FIELDS), r
        assert r["dataset"] == dataset and r["prompt"].endswith("Answer: ")
        assert isinstance(r["correct"], bool) and isinstance(r["completion"], str)
        assert r["question"] in r["prompt"]
    assert 0.0 <= results["accuracy"] <= 1.0 and results["total"] == n
    assert results["accuracy"] == sum(r["correct"] for r in records) / n
    for key in ("unextractable", "timed_out", "seconds", "generated_tokens", "tokens_per_s"):
        assert key in results
    assert all(k in results["settings"] for k in SETTINGS)
    assert results["generated_tokens"] == sum(r["generated_tokens"] for r in records)


# ------------------------------------------------------------------------ end to end
@pytest.mark.parametrize(
    "dataset,data,truths",
    [
        ("gsm8k", "gsm8k", ANSWERS),
        ("math", "math", MATH_ANSWERS),
        ("math500", "math500", MATH_ANSWERS),  # its answer column, not the solution's box
        ("math", "metamath", MATH_ANSWERS),
    ],
)
def test_every_file_shape_generates_end_to_end(env, tmp_path, capsys, dataset, data, truths):
    assert _eval(env, tmp_path, dataset=dataset, data=data) == 0
    records, results = _read(tmp_path, dataset)
    _check_complete(records, results, dataset, len(QUESTIONS))
    assert [r["ground_truth"] for r in records] == truths
    assert [r["question"] for r in records] == QUESTIONS
    assert results["settings"]["template"] == "plain" and results["settings"]["dtype"] == "float32"
    assert ("strict_match" in results) == (dataset == "gsm8k")
    assert f"{dataset}: accuracy" in capsys.readouterr().out


def test_chat_template_and_max_samples(env, tmp_path):
    overrides = ["prompt_template", "chat", "system_prompt", "Be brief.", "max_samples", "2"]
    assert _eval(env, tmp_path, *overrides, model="qwen2") == 0
    records, results = _read(tmp_path, "gsm8k")
    assert len(records) == 2 and results["settings"]["max_samples"] == 2
    assert records[0]["prompt"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


# ------------------------------------------------------------------------ generation
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_sorted_batches_give_the_completions_of_batch_one(env, family):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(env[family])
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    model = AutoModelForCausalLM.from_pretrained(env[family]).eval()
    prompts = [f"Question: {q}\nAnswer: " for q in QUESTIONS * 2]
    kw = dict(template="plain", max_new_tokens=10, progress=False)
    one = generate_hf(model, tok, prompts, batch_size=1, **kw)
    for batch, sort in ((4, True), (16, True), (3, False)):
        got = generate_hf(model, tok, prompts, batch_size=batch, sort=sort, **kw)
        assert got.completions == one.completions and got.tokens == one.tokens, (batch, sort)
    assert len(set(one.completions)) > 1  # the prompts lead somewhere different


def test_length_order_is_longest_first_and_stable():
    assert length_order([3, 5, 3, 9]) == [3, 1, 0, 2]
    assert length_order([3, 5, 3, 9], sort=False) == [0, 1, 2, 3]


def test_the_next_turn_marker_stops_generation_and_is_cut(env, monkeypatch):
    import re

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpart.evaluation import generate

    assert cut_at_stop("x = 3\nQuestion: next", ("Question:",)) == "x = 3\n"
    assert cut_at_stop("a ### Instruction b Question: c", ("Question:", "### Instruction")) == "a "
    assert cut_at_stop("no marker", ("Question:",)) == "no marker"

    tok = AutoTokenizer.from_pretrained(env["llama"])
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    model = AutoModelForCausalLM.from_pretrained(env["llama"]).eval()
    prompt = [f"Question: {QUESTIONS[0]}\nAnswer: "]
    kw = dict(template="plain", max_new_tokens=24, batch_size=1, progress=False)
    free = generate_hf(model, tok, prompt, **kw)
    # a word the model writes later on: made the template's stop marker, it ends the text
    word = next(m for m in re.finditer(r"[A-Za-z0-9]{2,}", free.completions[0]) if m.start() > 2)
    monkeypatch.setitem(generate.STOP_MARKERS, "plain", (word.group(),))
    stopped = generate_hf(model, tok, prompt, **kw)
    assert stopped.completions[0] == free.completions[0][: free.completions[0].find(word.group())]
    assert stopped.tokens[0] < free.tokens[0]


# ------------------------------------------------------------------------ skip, rescore
def test_a_finished_evaluation_is_skipped_unless_forced(env, tmp_path, capsys):
    assert _eval(env, tmp_path) == 0
    results = tmp_path / "eval" / "gsm8k" / "results.json"
    before = results.read_text()
    results.write_text(before.replace('"accuracy"', '"accuracy_marker": 1, "accuracy"', 1))
    capsys.readouterr()
    assert _eval(env, tmp_path) == 0
    assert "already evaluated" in capsys.readouterr().out
    assert "accuracy_marker" in results.read_text()  # untouched
    assert _eval(env, tmp_path, flags=["--force"]) == 0
    assert "accuracy_marker" not in results.read_text()


KILL_AFTER = """
import os, signal, sys
from gpart.evaluation import generate
from gpart.runners.math_eval import main

real, calls = generate.generate_hf, []

def dies_mid_dataset(*args, **kwargs):
    calls.append(1)
    if len(calls) > {chunks}:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: as a crash or OOM kill
    return real(*args, **kwargs)

generate.generate_hf = dies_mid_dataset
sys.exit(main(sys.argv[1:]))
"""


def test_an_evaluation_killed_mid_dataset_resumes_to_the_same_predictions(env, tmp_path, capsys):
    import signal
    import subprocess
    import sys

    overrides = ["save_every", "2", "max_new_tokens", "10"]  # chunks of 2 of the 5 problems
    assert _eval(env, tmp_path / "whole", *overrides) == 0
    argv = ["--base_model", str(env["llama"]), "--dataset", "gsm8k", "--output_dir",
            str(tmp_path / "killed"), "data_file.gsm8k", str(env["gsm8k"]), "max_new_tokens",
            "12", "batch_size", "2", "device", "cpu", *overrides]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER.format(chunks=2), *argv],
                            capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PYTHONPATH": str(root / "src")})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = tmp_path / "killed" / "eval" / "gsm8k"
    assert not (folder / "results.json").exists() and not (folder / "predictions.jsonl").exists()
    chunks = sorted((folder / "partial").glob("chunk-*.json"))
    assert len(chunks) == 2 and all(json.loads(c.read_text())["rows"] for c in chunks)

    # other settings are refused, in one line naming what changed, and touch nothing
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*argv, "max_new_tokens", "11"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert "max_new_tokens 10 -> 11" in err and "--force to start over" in err
    assert sorted((folder / "partial").glob("chunk-*.json")) == chunks

    assert main(argv) == 0  # the same command: resumes
    out = capsys.readouterr().out
    assert "resuming: 4/5 problems generated before" in out
    assert (folder / "predictions.jsonl").read_bytes() == (
        tmp_path / "whole" / "eval" / "gsm8k" / "predictions.jsonl"
    ).read_bytes()
    results = json.loads((folder / "results.json").read_text())
    assert results["resumed"] == 4 and not (folder / "partial").exists()


def test_force_starts_an_interrupted_evaluation_over(env, tmp_path, capsys):
    from gpart.evaluation.store import PartialPredictions

    folder = tmp_path / "eval" / "gsm8k"
    stale = PartialPredictions(folder, {"model": "another"})
    stale.start()
    stale.save([(0, "stale completion", 3)], 1.0)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _eval(env, tmp_path)
    assert "model 'another' -> " in capsys.readouterr().err
    assert _eval(env, tmp_path, flags=["--force"]) == 0
    records, results = _read(tmp_path, "gsm8k")
    assert records[0]["completion"] != "stale completion" and results["resumed"] == 0
    assert not (folder / "partial").exists()


def _rescore_matches(tmp_path: Path, dataset: str, results: dict) -> None:
    path = tmp_path / "eval" / dataset / "predictions.jsonl"
    assert main(["--rescore", str(path)]) == 0
    again = json.loads(path.with_name("results.rescored.json").read_text())
    assert again["accuracy"] == results["accuracy"] and again["changed"] == 0
    for key in ("strict_match", "flexible_extract", "unextractable"):
        assert again.get(key) == results.get(key)


def test_rescore_reproduces_the_gsm8k_accuracy_from_answer_only_ground_truth(env, tmp_path):
    # A first pass learns what the model answers; the data then makes some answers right.
    assert _eval(env, tmp_path / "probe") == 0
    hits = [r["prediction"] for r in _read(tmp_path / "probe", "gsm8k")[0]]
    assert any(hits[::2]), hits  # something to get right
    data = [
        {"question": q, "answer": f"#### {hit if i % 2 == 0 and hit else 987654}"}
        for i, (q, hit) in enumerate(zip(QUESTIONS, hits, strict=True))
    ]
    env = {**env, "rigged": write_jsonl(tmp_path / "rigged.jsonl", data)}
    assert _eval(env, tmp_path, data="rigged") == 0
    records, results = _read(tmp_path, "gsm8k")
    assert 0 < results["accuracy"] < 1
    _rescore_matches(tmp_path, "gsm8k", results)


def test_rescore_reproduces_the_math_accuracy_from_answer_only_ground_truth(
    env, tmp_path, monkeypatch
):
    # A random tiny model writes no box; these completions stand in for a trained one's
    # (equal to the references only up to normalisation, sympy or order).
    from gpart.evaluation import generate

    said = [r"so $\boxed{\dfrac12}$", r"\boxed{4}", r"\boxed{\sqrt2}", "no answer",
            r"The answer is $(1, 2)$"]  # fmt: skip

    def canned(model, tokenizer, prompts, **kw):
        return generate.Generations([said[QUESTIONS.index(p.split(": ")[1].split("\n")[0])]
                                     for p in prompts], [3] * len(prompts), 0.5)  # fmt: skip

    monkeypatch.setattr(generate, "generate_hf", canned)
    assert _eval(env, tmp_path, dataset="math") == 0
    records, results = _read(tmp_path, "math")
    assert [r["correct"] for r in records] == [True, False, True, False, True]
    assert results["accuracy"] == 0.6 and results["unextractable"] == 1
    _rescore_matches(tmp_path, "math", results)


def test_every_grader_is_recorded_and_rescore_can_choose(env, tmp_path, monkeypatch, capsys):
    from gpart.evaluation import generate

    said = ["The answer is 42.", "Step: 1 + 2 = 3\n#### 3", "so 84", "The answer is 2300%",
            "no idea"]  # fmt: skip

    def canned(model, tokenizer, prompts, **kw):
        return generate.Generations([said[QUESTIONS.index(p.split(": ")[1].split("\n")[0])]
                                     for p in prompts], [3] * len(prompts), 0.5)  # fmt: skip

    monkeypatch.setattr(generate, "generate_hf", canned)
    assert _eval(env, tmp_path) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.6000 by gpart" in out and "official 0.6000 (2 differ)" in out
    records, results = _read(tmp_path, "gsm8k")
    # ours: 42, 3, 84 right; the paper's: 42, 84 and 2300% (100x 23) right, the 1 of "1 + 2"
    assert [r["graders"]["gpart"]["correct"] for r in records] == [True, True, True, False, False]
    assert [r["graders"]["official"]["correct"] for r in records] == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert [r["correct"] for r in records] == [True, True, True, False, False]  # the primary's
    assert results["grader"] == "gpart" and results["disagreements"] == {"gpart/official": 2}
    assert results["graders"]["official"] == {"accuracy": 0.6, "correct": 3, "unextractable": 1,
                                              "timed_out": 0}  # fmt: skip
    path = tmp_path / "eval" / "gsm8k" / "predictions.jsonl"
    assert main(["--rescore", str(path), "graders", "official,gpart"]) == 0
    again = json.loads(path.with_name("results.rescored.json").read_text())
    assert again["grader"] == "official" and again["changed"] == 2
    assert again["graders"] == results["graders"]


def test_check_answer_accepts_the_bare_reference_answer():
    assert check_answer("gsm8k", "so 1,000 in all. The answer is 1000.", "1000").correct
    assert check_answer("gsm8k", "The answer is 18", "18").harness["flexible_extract"]["correct"]
    assert check_answer("math", r"$\boxed{\dfrac12}$", r"\frac{1}{2}").correct
    assert check_answer("math", r"$\boxed{(1, 2)}$", "(1,2)").correct
    assert not check_answer("math", r"$\boxed{3}$", r"\frac{1}{2}").correct


def test_local_files_keep_the_reference_answer(env, tmp_path):
    nested = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "p", "solution": r"first \boxed{1} then \boxed{\frac{1}{\sqrt{2}}}."}])  # fmt: skip
    assert load_local_items("math", nested)[0].ground_truth == r"\frac{1}{\sqrt{2}}"
    comma = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "so\n#### 1,000"}])
    assert load_local_items("gsm8k", comma)[0].ground_truth == "1000"


def test_hub_sets_read_their_sources_in_the_fixed_order(monkeypatch):
    from datasets import Dataset

    from gpart.evaluation import eval_sets

    calls = []

    def hub(source, subset=None, *, split=None, offline_hint):
        calls.append((source, subset, split))
        if source == "openai/gsm8k":
            return Dataset.from_dict({"question": ["q"], "answer": ["s\n#### 1,234"]})
        if source == "HuggingFaceH4/MATH-500":
            return Dataset.from_dict({"problem": ["p"], "solution": [r"\boxed{9}"],
                                      "answer": [r"\frac{1}{2}"]})  # fmt: skip
        return Dataset.from_dict({"problem": [f"{subset} problem"],
                                  "solution": [rf"so \boxed{{{subset}}}"]})  # fmt: skip

    monkeypatch.setattr(eval_sets, "load_hub_dataset", hub)
    assert [i.ground_truth for i in eval_sets.load_eval_items("gsm8k")] == ["1234"]
    assert calls == [("openai/gsm8k", "main", "test")]
    subjects = ["algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                "number_theory", "prealgebra", "precalculus"]  # fmt: skip
    items = eval_sets.load_eval_items("math")
    assert [i.ground_truth for i in items] == subjects and [i.index for i in items] == list(
        range(7)
    )
    assert calls[1:] == [("EleutherAI/hendrycks_math", s, "test") for s in subjects]
    (item,) = eval_sets.load_eval_items("math500")
    assert item.ground_truth == r"\frac{1}{2}" and calls[-1] == (
        "HuggingFaceH4/MATH-500",
        None,
        "test",
    )
    assert len(eval_sets.load_eval_items("math", max_samples=2)) == 2


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_file", "no such file"),
        ("bad_columns", "none of the known shapes"),
        ("no_answer", "row 0"),
        ("file_of_no_dataset", "data_file.math is given but math is not evaluated"),
        ("no_model", "give --adapter_path"),
        ("no_output", "give --output_dir"),
        ("vllm", "uv sync --locked --extra vllm --no-dev"),
        ("not_a_run", "neither a run directory"),
        ("rescore_missing", "--rescore: no predictions file"),
        ("math_verify_missing", "graders: the math-verify grader needs the math-verify package"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(
    env, tmp_path, capsys, monkeypatch, case, message
):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": 1}])
    no_answer = write_jsonl(tmp_path / "na.jsonl", [{"question": "q", "answer": "no number"}])
    out = tmp_path / "out"
    base = ["--base_model", str(env["llama"]), "--output_dir", str(out), "--dataset", "gsm8k"]
    gsm8k = ["data_file.gsm8k", str(env["gsm8k"]), "device", "cpu"]
    argv = {
        "missing_file": [*base, "data_file.gsm8k", str(tmp_path / "nope.jsonl")],
        "bad_columns": [*base, "data_file.gsm8k", str(bad)],
        "no_answer": [*base, "data_file.gsm8k", str(no_answer)],
        "file_of_no_dataset": [*base, *gsm8k, "data_file.math", str(bad)],
        "no_model": ["--dataset", "gsm8k", *gsm8k],
        "no_output": ["--base_model", str(env["llama"]), "--dataset", "gsm8k", *gsm8k],
        "vllm": [*base, *gsm8k, "backend", "vllm"],
        "not_a_run": ["--adapter_path", str(tmp_path), "--dataset", "gsm8k", *gsm8k],
        "rescore_missing": ["--rescore", str(tmp_path / "predictions.jsonl")],
        "math_verify_missing": [*base, *gsm8k, "graders", "gpart,math-verify"],
    }[case]  # fmt: skip
    if case == "math_verify_missing":
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "math_verify" else real(name, *a))  # fmt: skip
    if case == "vllm":  # as where it is not installed, even in the vllm extra's environment
        monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.slow
def test_accelerate_launch_shards_and_the_main_process_writes_everything(env, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    flags = ["--base_model", str(env["llama"]), "--dataset", "gsm8k"]
    overrides = [
        "data_file.gsm8k",
        str(env["gsm8k"]),
        "max_new_tokens",
        "10",
        "batch_size",
        "2",
        "save_every",
        "2",
    ]  # fmt: skip  (each shard saves its own chunks)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(root / "configs" / "accelerate" / "ddp.yaml"), "--num_processes", "2",
              "--main_process_port", str(port), str(root / "src/scripts/math/eval_math.py")]  # fmt: skip
    done = subprocess.run([*launch, *flags, "--output_dir", str(tmp_path / "ddp"), *overrides],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("gsm8k: accuracy") == 1  # only the main process reports
    assert main([*flags, "--output_dir", str(tmp_path / "one"), *overrides, "device", "cpu"]) == 0
    shards, results = _read(tmp_path / "ddp", "gsm8k")
    alone, _ = _read(tmp_path / "one", "gsm8k")
    assert results["settings"]["processes"] == 2
    assert not (tmp_path / "ddp" / "eval" / "gsm8k" / "partial").exists()
    keep = ("index", "prompt", "completion", "correct", "generated_tokens")
    assert [{k: r[k] for k in keep} for r in shards] == [{k: r[k] for k in keep} for r in alone]


# ------------------------------------------------------------------------ trained runs
@pytest.fixture(scope="module")
def trained_run(env, tmp_path_factory):
    """A GPart run of the math runner in the ``alpaca`` template with a system prompt."""
    import os

    root = tmp_path_factory.mktemp("run")
    os.environ["GPART_CACHE_DIR"] = str(root / "cache")
    data = write_jsonl(root / "data" / "metamathqa" / "train.jsonl", rows(24))
    argv = ["--adapter_type", "gpart", "--base_model", str(env["llama"]), "--data_dir",
            str(data.parents[1]), "--output_dir", str(root / "logs"), "--seed", "0",
            "training.epochs", "1", "training.batch_size", "4", "training.grad_accum", "1",
            "training.num_workers", "0", "training.precision", "fp32",
            "training.max_seq_length", "128", "training.gradient_checkpointing", "false",
            "training.lr", "0.5", "data.heldout_samples", "4", "adapter.d", "256",
            "data.prompt_template", "alpaca", "data.system_prompt", "Be brief."]  # fmt: skip
    try:
        assert train_runner.main(argv) == 0
    finally:
        os.environ.pop("GPART_CACHE_DIR", None)
    return next((root / "logs").rglob("results.json")).parent


def test_a_run_directory_is_evaluated_with_its_template_and_merged_adapter(env, trained_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    training_results = (trained_run / "results.json").read_bytes()
    argv = ["--adapter_path", str(trained_run), "--dataset", "gsm8k", "data_file.gsm8k",
            str(env["gsm8k"]), "max_new_tokens", "8", "batch_size", "3", "device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    records, results = _read(trained_run, "gsm8k")
    assert results["settings"]["template"] == "alpaca"
    assert results["settings"]["adapter"] == str(trained_run / "adapter")
    assert results["settings"]["model"] == str(env["llama"])
    assert records[0]["prompt"].startswith("Be brief.\n\nBelow is an instruction")
    assert records[0]["prompt"].endswith("### Response:\n")
    assert (trained_run / "results.json").read_bytes() == training_results

    # The merged model answers as the unmerged adapter does (and unlike the base model).
    tok = AutoTokenizer.from_pretrained(env["llama"])
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    base = AutoModelForCausalLM.from_pretrained(env["llama"]).eval()
    prompts = [r["prompt"] for r in records]
    kw = dict(template="alpaca", max_new_tokens=8, batch_size=3, progress=False)
    plain = generate_hf(base, tok, prompts, **kw).completions
    unmerged = PeftModel.from_pretrained(base, trained_run / "adapter").eval()
    assert generate_hf(unmerged, tok, prompts, **kw).completions == [
        r["completion"] for r in records
    ]
    assert plain != [r["completion"] for r in records]


def test_the_adapter_folder_of_a_run_resolves_to_the_run(env, trained_run, tmp_path):
    from gpart.runners.eval_source import resolve_source

    src = resolve_source(str(trained_run / "adapter"), None, None)
    assert src.out_root == trained_run and src.template == "alpaca"
    assert src.system_prompt == "Be brief." and src.base_model == str(env["llama"])
    other = resolve_source(str(trained_run), str(env["qwen2"]), str(tmp_path))
    assert other.base_model == str(env["qwen2"]) and other.out_root == tmp_path


def test_profile_times_batches_sorting_and_merging(env, trained_run, capsys, tmp_path):
    from gpart.bench.generation import main as profile_main

    argv = ["--adapter_path", str(trained_run), "--dataset", "gsm8k", "--output_dir",
            str(tmp_path), "data_file.gsm8k", str(env["gsm8k"]), "max_samples", "5",
            "batch_size", "2", "max_new_tokens", "6", "device", "cpu"]  # fmt: skip
    assert profile_main(argv) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    assert [r[:4] for r in rows] == [["merged", "1", "yes", "2"], ["merged", "2", "yes", "5"],
                                     ["merged", "2", "no", "5"], ["unmerged", "2", "yes", "5"]]  # fmt: skip
    assert [r[-1] for r in rows[:3]] == ["2/2"] * 3  # batching and order change no completion
    assert not list(tmp_path.iterdir())  # writes nothing


# ------------------------------------------------------------------------ real weights
@pytest.mark.slow
def test_smollm2_answers_real_gsm8k_questions(smollm2_dir, tmp_path, capsys):
    if not SHARED_GSM8K.is_file():
        pytest.skip(f"{SHARED_GSM8K} absent")
    argv = ["--base_model", str(smollm2_dir), "--dataset", "gsm8k", "--output_dir",
            str(tmp_path), "data_file.gsm8k", str(SHARED_GSM8K), "max_samples", "4",
            "max_new_tokens", "64", "batch_size", "4", "prompt_template", "chat",
            "device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    records, results = _read(tmp_path, "gsm8k")
    assert [r["index"] for r in records] == [0, 1, 2, 3] and results["total"] == 4
    assert all(all(k in r for k in FIELDS) for r in records)
    assert all(r["prompt"].endswith("<|im_start|>assistant\n") for r in records)
    assert [r["ground_truth"] for r in records] == ["18", "3", "70000", "540"]
    assert all(r["completion"].strip() for r in records)  # it says something
    assert sum(r["prediction"] is not None for r in records) >= 2  # and numbers
    path = tmp_path / "eval" / "gsm8k" / "predictions.jsonl"
    assert main(["--rescore", str(path)]) == 0
    again = json.loads(path.with_name("results.rescored.json").read_text())
    assert again["accuracy"] == results["accuracy"] and again["changed"] == 0
    print(capsys.readouterr().out)
