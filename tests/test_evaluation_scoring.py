"""Re-scoring a written ``predictions.jsonl``, its errors, and a light ``gpart.evaluation``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpart.evaluation import (
    DEFAULT_GRADERS,
    RESCORED_PREDICTIONS,
    RESCORED_RESULTS,
    rescore,
    rules_for,
    score_completions,
)

GSM8K_ROWS = [
    # ours right, harness strict right, flexible right
    {"completion": "She makes 9 * 2 = 18 dollars.\n#### 18", "ground_truth": "...\n#### 18"},
    # ours right ("1,000." after the marker); strict none; flexible "1,000." -> "1000" right
    {"completion": "The answer is 1,000.", "ground_truth": "...\n#### 1000"},
    # ours right (the marker); flexible reads the follow-up question's "2"
    {"completion": "The answer is $18.00.\nQuestion: is 2 even?", "ground_truth": "#### 18"},
    # wrong everywhere
    {"completion": "The answer is 17.", "ground_truth": "#### 18"},
    # unextractable
    {"completion": "I cannot say.", "ground_truth": "#### 5"},
]


def _write(path, rows, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"index": i, **extra, **row}) for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rescore_gsm8k_reproduces_the_accuracy(tmp_path):
    path = _write(
        tmp_path / "eval" / "gsm8k" / "predictions.jsonl",
        GSM8K_ROWS,
        dataset="gsm8k",
        prediction="stale",
        correct=False,
        extra_field="kept",
    )
    summary = rescore(path)
    expected = {
        "dataset": "gsm8k",
        "accuracy": 0.6,
        "total": 5,
        "correct": 3,
        "unextractable": 1,
        "timed_out": 0,
        "strict_match": 0.2,
        "flexible_extract": 0.4,
        "grader": "gpart",
        "graders": {
            "gpart": {"accuracy": 0.6, "correct": 3, "unextractable": 1, "timed_out": 0},
            # the paper's ignores "####": with no answer marker it reads the first number
            # of the first line, the 9 of "9 * 2 = 18"
            "official": {"accuracy": 0.4, "correct": 2, "unextractable": 1, "timed_out": 0},
        },
        "disagreements": {"gpart/official": 1},
        "changed": 3,  # the file said all wrong
        "timeout_s": 3.0,
        "source": "predictions.jsonl",
    }
    assert summary == expected
    assert json.loads((path.parent / RESCORED_RESULTS).read_text()) == expected
    rows = [
        json.loads(line) for line in (path.parent / RESCORED_PREDICTIONS).read_text().splitlines()
    ]
    assert [r["prediction"] for r in rows] == ["18", "1000", "18.00", "17", None]
    assert [r["correct"] for r in rows] == [True, True, True, False, False]
    assert [r["unextractable"] for r in rows] == [False, False, False, False, True]
    assert [r["harness"]["flexible_extract"]["prediction"] for r in rows] == [
        "18",
        "1,000.",
        "2",
        "17.",
        "[invalid]",
    ]
    assert all(r["extra_field"] == "kept" and r["timed_out"] is False for r in rows)
    assert [r["graders"]["official"]["prediction"] for r in rows] == [
        "9.0", "1000.0", "18.0", "17.0", None]  # fmt: skip
    assert [r["graders"]["gpart"]["correct"] for r in rows] == [r["correct"] for r in rows]
    assert [r["index"] for r in rows] == list(range(5))
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "predictions.jsonl",
        RESCORED_PREDICTIONS,
        RESCORED_RESULTS,
    ]  # no temporary files left


def test_rescore_math_from_the_folder_name(tmp_path):
    rows = [
        {"completion": "so $\\boxed{\\dfrac{1}{2}}$", "ground_truth": "$\\boxed{0.5}$"},
        {"completion": "$\\boxed{5^\\circ}$", "ground_truth": "\\boxed{5}"},
        {"completion": "$\\boxed{(1,2)}$", "ground_truth": "\\boxed{[1,2)}"},
        {"completion": "$\\boxed{\\sqrt{8}}$", "ground_truth": "2\\sqrt{2}", "harness": "old"},
    ]
    path = _write(tmp_path / "eval" / "math500" / "predictions.jsonl", rows)
    summary = rescore(path)
    assert (summary["dataset"], summary["accuracy"], summary["total"]) == ("math500", 0.75, 4)
    assert "strict_match" not in summary and summary["changed"] == 0  # no "correct" given
    written = [
        json.loads(line) for line in (path.parent / RESCORED_PREDICTIONS).read_text().splitlines()
    ]
    assert [r["correct"] for r in written] == [True, True, False, True]
    assert "harness" not in written[3]  # a stale field of the other rules goes


def test_rescore_reads_the_problem_from_each_line(tmp_path):
    # the same decimal for an exact answer: right only where the problem asks for it
    row = {"completion": "so $\\boxed{0.33}$", "ground_truth": "\\frac{1}{3}"}
    rows = [
        {**row, "question": "Express it to the nearest hundredth."},
        {**row, "question": "Express it as a common fraction."},
        row,
    ]
    path = _write(tmp_path / "eval" / "math" / "predictions.jsonl", rows)
    rescore(path, graders=["gpart"])
    written = [
        json.loads(line) for line in (path.parent / RESCORED_PREDICTIONS).read_text().splitlines()
    ]
    assert [r["correct"] for r in written] == [True, False, False]


def test_score_completions_and_rescore_agree(tmp_path):
    pairs = [(row["completion"], row["ground_truth"]) for row in GSM8K_ROWS]
    direct = score_completions("gsm8k", pairs, graders=DEFAULT_GRADERS)
    path = _write(tmp_path / "predictions.jsonl", GSM8K_ROWS, dataset="gsm8k")
    summary = rescore(path)
    assert {k: summary[k] for k in direct.summary} == direct.summary
    assert [r.prediction for r in direct.results] == ["18", "1000", "18.00", "17", None]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"index": 0, "dataset": "gsm8k", "completion": "1", "ground_truth": "1"}', "{oops"], "line 2 is not valid JSON"),
        (["[1, 2]"], "line 1 is a JSON list, not an object"),
        (['{"index": 0, "dataset": "gsm8k"}'], "line 1 lacks 'completion', 'ground_truth'"),
        (['{"index": 0, "dataset": "gsm8k", "completion": 5, "ground_truth": "5"}'], "line 1: 'completion' must be a string"),
        (['{"index": 0, "completion": "1", "ground_truth": "1"}'], "line 1 has no 'dataset' and the folder 'run' names none"),
        (['{"index": 0, "dataset": "gsm8", "completion": "1", "ground_truth": "1"}'], "line 1: unknown dataset 'gsm8'.*did you mean 'gsm8k'"),
        (
            [
                '{"index": 0, "dataset": "gsm8k", "completion": "1", "ground_truth": "1"}',
                "",
                '{"index": 1, "dataset": "math", "completion": "1", "ground_truth": "1"}',
            ],
            "line 3: dataset 'math', but earlier lines are 'gsm8k'",
        ),
        (['{"index": 7, "dataset": "gsm8k", "completion": "1", "ground_truth": "no answer"}'], "index 7: GSM8K reference has no number"),
        ([""], "no predictions in the file"),
    ],
)  # fmt: skip
def test_rescore_malformed_files_name_the_line(tmp_path, lines, message):
    path = tmp_path / "run" / "predictions.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        rescore(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["predictions.jsonl"]


def test_rescore_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no predictions file at"):
        rescore(tmp_path / "nope.jsonl")


def test_rules_and_empty_scoring():
    assert [rules_for(d) for d in ("gsm8k", "math", "math500")] == ["gsm8k", "math", "math"]
    with pytest.raises(ValueError, match="unknown dataset 'MATH-500'.*known: gsm8k, math, math500"):
        rules_for("MATH-500")
    with pytest.raises(ValueError, match="no completions to score"):
        score_completions("math", [])


def test_import_is_light():
    """`import gpart.evaluation` pulls in neither torch (nor transformers) nor sympy."""
    code = (
        "import sys, json, gpart.evaluation\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'peft', 'sympy') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
