"""GSM8K answer checking: references, our extraction, lm-evaluation-harness's two filters.

Each written case is one a naive checker (last integer, string compare) gets wrong. The
real test set is read from ``../shared/data/gsm8k_test.jsonl`` and skipped when absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpart.evaluation import (
    check_answer,
    gsm8k_equal,
    gsm8k_prediction,
    gsm8k_reference,
    harness_exact_match,
    harness_flexible_extract,
    harness_strict_extract,
    score_completions,
)
from gpart.evaluation.answers import harness_normalize

GSM8K_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_test.jsonl"


# ---------------------------------------------------------------------------- references
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("He makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000", "70000"),
        ("so 1,000 in all\n#### 1,000", "1000"),  # commas removed
        ("It loses 3 degrees\n#### -3", "-3"),  # negative
        ("#### 2.5", "2.5"),
        ("first #### 4\nthen #### 5", "5"),  # the last marker
        ("18", "18"),  # a bare number (ground truth stored without its solution)
        (18, "18"),
    ],
)
def test_gsm8k_reference(answer, expected):
    assert gsm8k_reference(answer) == expected


@pytest.mark.parametrize("answer", ["no marker, no number", "#### ", "#### eighteen"])
def test_gsm8k_reference_without_a_number_is_an_error(answer):
    with pytest.raises(ValueError, match="GSM8K reference has no number"):
        gsm8k_reference(answer)


# --------------------------------------------------------------------------- predictions
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The answer is 1,000.", "1000"),  # thousands comma, trailing period
        ("She pays $18.00 in total.", "18.00"),  # dollar sign and cents
        ("The temperature drops to -3 degrees.", "-3"),  # negative
        ("That is 5-3 = 2 apples.", "2"),  # a binary minus is no sign
        ("So 50% of them. The answer is 50%", "50"),  # percent
        ("Each gets 3/4 of a pie.", "3/4"),  # fraction
        ("The answer is \\boxed{\\frac{3}{4}}.", "3/4"),  # LaTeX fraction in a box
        ("The answer is .5", ".5"),  # no leading zero
        ("It costs 7.25 dollars.", "7.25"),  # decimal
        ("The answer is −4.", "-4"),  # Unicode minus
        ("The answer is 12. Then 3 more questions follow.", "12"),  # marker beats last number
        ("#### 42\nQuestion: how many are 7 and 8?", "42"),  # marker beats later numbers
        ("answer: 9 boxes of 12", "9"),  # first number after the marker
        ("\\boxed{25} though 30 would be wrong", "25"),  # a box is a marker
        ("The answer is \\$1,234.", "1234"),  # escaped dollar
        ("The answer is 3 apples. Check: 3 + 4 = 7", "3"),  # later arithmetic is no answer
        ("He has 12 apples and 1,2,3 ...", "3"),  # "1,2,3" is no thousands number
        ("The answer is unclear, but 8 is likely", "8"),  # marker without number: last number
        ("No number here.", None),
    ],
)
def test_gsm8k_prediction(completion, expected):
    assert gsm8k_prediction(completion) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "equal"),
    [
        ("1000", "1000", True),
        ("18.00", "18", True),  # not string-equal
        ("0.5", "1/2", True),
        (".5", "0.5", True),
        ("-3", "3", False),
        ("18.01", "18", False),  # exact, no tolerance: GSM8K answers are exact
        (None, "18", False),
    ],
)
def test_gsm8k_equal(prediction, reference, equal):
    assert gsm8k_equal(prediction, reference) is equal


def test_check_answer_gsm8k_fields():
    got = check_answer("gsm8k", "She makes 9 * 2 = $18.00 a day.", "...\n#### 18")
    assert (got.prediction, got.correct, got.unextractable, got.timed_out) == (
        "18.00",
        True,
        False,
        False,
    )
    none = check_answer("gsm8k", "I cannot tell.", "#### 18")
    assert (none.prediction, none.correct, none.unextractable) == (None, False, True)


# ------------------------------------------------------------------ lm-evaluation-harness
# The documented behaviour of lm_eval/tasks/gsm8k/gsm8k.yaml: strict-match takes the first
# "#### <number>", flexible-extract the last number-like run; "[invalid]" when none;
# exact_match drops ",", "$", everything up to the last "#### " and a final "." on both sides.
@pytest.mark.parametrize(
    ("completion", "strict", "flexible"),
    [
        ("Janet sells 9 eggs for $2 each.\n#### 18", "18", "18"),
        ("#### 1,000.\nQuestion: 5 more", "1,000.", "5"),  # strict first; flexible last
        ("The answer is $18.", "[invalid]", "$18."),  # no '####'
        ("#### -3", "-3", "-3"),
        ("So 5-3 = 2", "[invalid]", "2"),
        ("No number.", "[invalid]", "[invalid]"),
        ("Done. ####18", "[invalid]", "18"),  # strict needs the space after ####
        ("pay 1.5 and 3", "[invalid]", "3"),  # a lone digit still matches the second group
    ],
)
def test_harness_filters(completion, strict, flexible):
    assert harness_strict_extract(completion) == strict
    assert harness_flexible_extract(completion) == flexible


@pytest.mark.parametrize(
    ("prediction", "ground_truth", "match"),
    [
        ("$18.", "Janet ...\n#### 18", True),  # "$" and the final "." go
        ("1,000", "... #### 1000", True),  # commas go
        ("18.00", "#### 18", False),  # string, not numeric (ours says equal)
        ("[invalid]", "#### 18", False),
        ("-3", "#### -3", True),
    ],
)
def test_harness_exact_match(prediction, ground_truth, match):
    assert harness_exact_match(prediction, ground_truth) is match


def test_harness_normalize_drops_everything_before_the_last_marker():
    assert harness_normalize("step\n#### 4\nmore\n#### 5.") == "5"


def test_harness_and_ours_disagree_where_documented():
    # ours reads the number after the last marker; flexible-extract reads the last number
    got = check_answer("gsm8k", "The answer is 18.\nQuestion: what is 2+3?", "#### 18")
    assert got.correct
    assert got.harness["flexible_extract"] == {"prediction": "3", "correct": False}
    assert got.harness["strict_match"] == {"prediction": "[invalid]", "correct": False}
    summary = score_completions(
        "gsm8k",
        [("#### 18", "#### 18"), ("The answer is 18.00", "#### 18"), ("I give up", "#### 3")],
    ).summary
    assert summary == {
        "dataset": "gsm8k",
        "accuracy": 2 / 3,
        "total": 3,
        "correct": 2,
        "unextractable": 1,
        "timed_out": 0,
        "strict_match": 1 / 3,
        "flexible_extract": 1 / 3,  # "18.00" is not "18" as a string
        "grader": "gpart",
        "graders": {
            "gpart": {"accuracy": 2 / 3, "correct": 2, "unextractable": 1, "timed_out": 0}
        },  # fmt: skip
        "disagreements": {},
    }


# ---------------------------------------------------------------------- the real test set
def _gsm8k_rows():
    if not GSM8K_TEST.is_file():
        pytest.skip(f"GSM8K test set not found at {GSM8K_TEST}")
    return [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()]


def test_every_real_reference_extracts_to_a_number():
    rows = _gsm8k_rows()
    assert len(rows) == 1319  # GSM8K's test split (Cobbe et al., 2021)
    for row in rows:
        assert gsm8k_reference(row["answer"]) is not None


def test_real_reference_solutions_score_as_completions():
    """Self-consistency on all of GSM8K test: each reference solution, given as the
    model's completion, is right."""
    rows = _gsm8k_rows()
    scores = score_completions("gsm8k", [(row["answer"], row["answer"]) for row in rows])
    assert scores.summary["accuracy"] == 1.0
    assert scores.summary["strict_match"] == 1.0
    assert scores.summary["flexible_extract"] == 1.0
    assert scores.summary["unextractable"] == 0
