"""``eval_math.py``'s command line (`gpart.configs.eval_cli`): flags, then ``key value``
overrides as the training runners take them; every override reaches the settings,
``--print_config`` shows what each set is evaluated with, and every mistake, a flag of the
earlier spelling included, is one error line naming what to write."""

from __future__ import annotations

import json

import pytest

from gpart.configs import ConfigError
from gpart.configs.eval_cli import EvalConfig, parse_eval_cli
from gpart.runners.math_eval import main


def test_overrides_reach_every_setting():
    cfg, flags = parse_eval_cli([
        "--base_model", "m", "--dataset", "gsm8k", "math500", "--output_dir", "o", "--force",
        "data_file.gsm8k", "g.jsonl", "batch_size", "4", "max_new_tokens", "99",
        "prompt_template", "chat", "system_prompt", "Be brief.", "sort", "false",
        "graders", "official,gpart", "save_every", "8", "max_samples", "3", "device", "cpu",
        "backend", "vllm"])  # fmt: skip
    assert flags.force and not flags.print_config and flags.rescore is None
    assert cfg == EvalConfig(
        base_model="m", datasets=["gsm8k", "math500"], output_dir="o",
        data_file={"gsm8k": "g.jsonl"}, batch_size=4, max_new_tokens=99,
        prompt_template="chat", system_prompt="Be brief.", sort=False,
        graders=["official", "gpart"], save_every=8, max_samples=3, device="cpu",
        backend="vllm")  # fmt: skip
    # the flags spell keys: the same as the overrides of those keys
    again, _ = parse_eval_cli(["base_model", "m", "datasets", "gsm8k,math500", "output_dir", "o"])
    assert (again.base_model, again.datasets, again.output_dir) == ("m", ["gsm8k", "math500"], "o")
    assert parse_eval_cli([])[0] == EvalConfig()  # defaults: gsm8k and math, every spec's own


@pytest.mark.parametrize(
    "argv,message",
    [
        (["batch_size", "four"], "batch_size: expected an integer, got 'four'"),
        (["batch_sise", "4"], "unknown key 'batch_sise'; did you mean 'batch_size'?"),
        (["data_file.gsm", "x"], "data_file.gsm: unknown dataset 'gsm'; did you mean 'gsm8k'?"),
        (["data_file", "x"], "unknown key 'data_file' (data_file.<dataset> PATH)"),
        (["--dataset", "gsm8k", "data_file.math", "x"], "data_file.math is given but math is "
         "not evaluated"),
        (["--dataset", "gsm8"], "datasets: unknown dataset 'gsm8'; did you mean 'gsm8k'?"),
        (["prompt_template", "alpacca"], "prompt_template: expected one of plain, alpaca"),
        (["save_every", "0"], "save_every 0: give 1 or more"),
        (["--output_dir", "a", "output_dir", "b"], "output_dir: given both as --output_dir"),
        (["batch_size"], "'batch_size' has no value"),
        # the earlier spellings: one line naming the new one
        (["--batch_size", "4"], "unknown flag --batch_size; did you mean the override "
         "`batch_size VALUE`?"),
        (["--max_new_tokens", "4"], "did you mean the override `max_new_tokens VALUE`?"),
        (["--model_path", "m"], "unknown flag --model_path; give the base model as --base_model"),
        (["--data_file", "f"], "give each set's file as the override `data_file.<dataset> PATH`"),
        (["--grader", "gpart"], "give the graders as the override `graders gpart,official`"),
        (["--no_sort"], "unknown flag --no_sort; give the override `sort false`"),
        (["--profile"], "python -m gpart.bench.generation"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line_naming_the_fix(argv, message, capsys):
    with pytest.raises(ConfigError):
        parse_eval_cli(argv)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "\n" not in err
    assert message in err, err


def test_print_config_shows_each_sets_spec_and_the_overrides(tmp_path, capsys):
    argv = ["--base_model", "m", "--dataset", "gsm8k", "math500", "--output_dir",
            str(tmp_path), "--print_config", "data_file.gsm8k", "g.jsonl", "system_prompt",
            "Be brief."]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    settings, plans = printed["settings"], printed["datasets"]
    assert settings["data_file"] == {"gsm8k": "g.jsonl"} and settings["batch_size"] == 16
    assert plans["gsm8k"] == {
        "data": "g.jsonl", "question_column": "question", "answer_column": "answer",
        "answer_format": "solution", "grading": "gsm8k", "prompt_template": "plain",
        "system_prompt": "Be brief.", "max_new_tokens": 1024,
        "output": str(tmp_path / "eval" / "gsm8k")}  # fmt: skip
    assert plans["math500"]["data"] == "HuggingFaceH4/MATH-500 (test)"
    assert plans["math500"]["max_new_tokens"] == 2048
    assert main([*argv, "max_new_tokens", "64", "prompt_template", "alpaca"]) == 0
    plans = json.loads(capsys.readouterr().out)["datasets"]
    assert {p["max_new_tokens"] for p in plans.values()} == {64}
    assert {p["prompt_template"] for p in plans.values()} == {"alpaca"}
    assert not list(tmp_path.iterdir())  # writes nothing
