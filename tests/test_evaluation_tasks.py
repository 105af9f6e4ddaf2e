"""The evaluation-set specs (`gpart.configs.tasks.EVAL_TASKS`) drive every step: a file in
a spec's columns is read by its answer format, prompted in its template, and graded by its
rules (the verdicts the graders' own tests pin), and a new set is one more spec."""

from __future__ import annotations

import json

import pytest

from gpart.configs.tasks import EVAL_TASKS, LocalShape, MathEvalTask, eval_task
from gpart.evaluation import score_completions
from gpart.evaluation.eval_sets import build_prompts, load_local_items
from gpart.runners.math_eval import main
from math_env import write_jsonl, write_tiny_decoder

# Per grading rules: (reference as a worked solution, a completion, gpart's verdict, the
# paper's verdict), as tests/test_evaluation_official.py pins them: the paper's grader
# takes 100x of a GSM8K reference and a relative 1e-4 on MATH; ours takes neither.
SOLUTIONS = {"gsm8k": ("Add them.\n#### 18", "18"), "math": (r"So $\boxed{13536}$.", "13536")}
CASES = {
    "gsm8k": [("The answer is 18.", True, True), ("The answer is 1800", False, True),
              ("Step 1: 9 * 2 = 18\n#### 18", True, False)],
    "math": [(r"so $\boxed{13536}$", True, True), (r"so $\boxed{13535}$", False, True),
             (r"so $\boxed{\dfrac{1}{2}}$", False, False)],
}  # fmt: skip


def test_every_set_a_runner_evaluates_has_a_spec():
    assert list(EVAL_TASKS) == ["gsm8k", "math", "math500"]
    assert {n: (t.grading, t.max_new_tokens, t.prompt_template) for n, t in EVAL_TASKS.items()} == {
        "gsm8k": ("gsm8k", 1024, "plain"),
        "math": ("math", 2048, "plain"),
        "math500": ("math", 2048, "plain"),
    }
    assert [t.display_name for t in EVAL_TASKS.values()] == ["GSM8K", "MATH", "MATH-500"]
    with pytest.raises(ValueError, match="unknown dataset 'math50'; did you mean 'math500'"):
        eval_task("math50")


@pytest.mark.parametrize("dataset", list(EVAL_TASKS))
def test_a_spec_reads_prompts_and_grades_its_set(dataset, tmp_path):
    spec = EVAL_TASKS[dataset]
    solution, answer = SOLUTIONS[spec.grading]
    stored = solution if spec.answer_format == "solution" else answer
    path = write_jsonl(tmp_path / "set.jsonl", [
        {spec.question_column: "What is 9 + 9?", spec.answer_column: stored}] * 3)  # fmt: skip
    items = load_local_items(dataset, path)
    assert [it.ground_truth for it in items] == [answer] * 3
    prompts = build_prompts(items, spec.prompt_template, system_prompt=None, tokenizer=None)
    assert prompts == ["Question: What is 9 + 9?\nAnswer: "] * 3
    completions = [c for c, *_ in CASES[spec.grading]]
    scores = score_completions(dataset, zip(completions, [answer] * 3, strict=True),
                               graders=["gpart", "official"])  # fmt: skip
    got = [(scores.verdicts(i)["gpart"]["correct"], scores.verdicts(i)["official"]["correct"])
           for i in range(3)]  # fmt: skip
    assert got == [(g, o) for _, g, o in CASES[spec.grading]]
    assert ("strict_match" in scores.summary) == (spec.grading == "gsm8k")


def test_the_first_matching_local_shape_wins(tmp_path):
    # MATH-500's own files hold problem, solution *and* answer: the answer column is read
    path = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "p", "solution": r"\boxed{0}", "answer": r"\frac{1}{2}"}])  # fmt: skip
    assert load_local_items("math", path)[0].ground_truth == r"\frac{1}{2}"
    shapes = EVAL_TASKS["math"].local_shapes
    assert [s.answer_format for s in shapes[:3]] == ["solution", "plain", "solution"]


def test_a_new_set_is_one_spec(tmp_path, monkeypatch, capsys):
    # SVAMP-like: numbers graded as GSM8K's, the answer column the number itself, its own
    # template and token budget; nothing else is edited.
    svamp = MathEvalTask(name="svamp", domain="math", source="ChilleD/SVAMP",
                         question_column="Body", answer_column="Answer", answer_format="plain",
                         local_shapes=(LocalShape("Body", "Answer", "plain", "SVAMP"),),
                         grading="gsm8k", prompt_template="alpaca", max_new_tokens=7)  # fmt: skip
    monkeypatch.setitem(EVAL_TASKS, "svamp", svamp)
    data = write_jsonl(tmp_path / "svamp.jsonl", [{"Body": "What is 2 + 2?", "Answer": 4.0}])
    model = write_tiny_decoder(tmp_path / "llama", "llama")
    argv = ["--base_model", str(model), "--dataset", "svamp", "--output_dir", str(tmp_path),
            "data_file.svamp", str(data), "device", "cpu"]  # fmt: skip
    assert main([*argv[:6], "--print_config", *argv[6:]]) == 0
    plan = json.loads(capsys.readouterr().out)["datasets"]["svamp"]
    assert (plan["max_new_tokens"], plan["prompt_template"], plan["grading"]) == (
        7,
        "alpaca",
        "gsm8k",
    )
    assert main(argv) == 0
    folder = tmp_path / "eval" / "svamp"
    (record,) = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    results = json.loads((folder / "results.json").read_text())
    assert (
        record["prompt"].startswith("Below is an instruction") and record["ground_truth"] == "4.0"
    )
    assert results["settings"]["max_new_tokens"] == 7 and "strict_match" in results
