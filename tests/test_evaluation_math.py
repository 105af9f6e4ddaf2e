"""MATH answer checking: boxes, normalisation, and equality by string, number, tuple, sympy.

Each written case is one the MATH reference's plain string comparison (or a naive box
regex) gets wrong. The sympy cases share the process-wide worker (one start, ~5 s).
"""

from __future__ import annotations

import pytest

from gpart.evaluation import (
    check_answer,
    last_boxed,
    math_equal,
    math_prediction,
    math_reference,
    normalize_math,
    score_completions,
)
from gpart.evaluation.answers import asked_places, math_number


# --------------------------------------------------------------------------------- boxes
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{5}$.", "5"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("first \\boxed{1}, finally \\boxed{2}", "2"),  # the last box
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$", "5"),  # no braces: up to the "$"
        ("\\boxed{3} and then \\boxed{\\frac{1}{2}", "3"),  # a truncated last box is skipped
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces inside
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
        ("\\boxedx{3}", None),  # another command, not a box
        ("no box", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_math_reference():
    solution = "We get $x = \\boxed{\\frac{\\pi}{2}}$, since $\\boxed{1}$ was a step? No."
    assert math_reference(solution) == "1"
    assert math_reference("The answer: \\boxed{\\dfrac{1}{2}}.") == "\\dfrac{1}{2}"
    assert math_reference(" 3\\sqrt{2} ") == "3\\sqrt{2}"  # MATH-500's bare answer field
    with pytest.raises(ValueError, match="MATH reference has no answer"):
        math_reference("  ")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("Thus $\\boxed{12}$.", "12"),
        ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
        ("The answer is 5. I hope so.", "5"),
        ("Answer: 0.25", "0.25"),
        ("The answer is: $(3, \\frac{\\pi}{2})$", "(3, \\frac{\\pi}{2})"),
        ("I am not sure.", None),
        ("The answer is", None),
    ],
)
def test_math_prediction(completion, expected):
    assert math_prediction(completion) == expected


# ------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac{3}{4}", "\\frac{3}{4}"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\frac1{2}", "\\frac{1}{2}"),
        ("\\frac{1}2", "\\frac{1}{2}"),  # the reference leaves this one
        ("\\frac\\pi2", "\\frac{\\pi}{2}"),
        ("\\sqrt3", "\\sqrt{3}"),
        ("\\sqrt 3", "\\sqrt{3}"),  # the reference makes this `\sqrt{ }3`
        ("\\sqrt[3]{2}", "\\sqrt[3]{2}"),
        ("10\\%", "10"),
        ("5^\\circ", "5"),
        ("5^{\\circ}", "5"),
        ("x = 4", "4"),
        ("k=-2", "-2"),
        ("\\theta = \\pi", "\\pi"),
        ("y = 2x + 1", "2x+1"),
        ("f(x) = 2x", "f(x)=2x"),  # a long left-hand side stays
        ("\\$18.00", "18.00"),
        ("10\\text{ cm}", "10"),
        ("10 \\text{ square units}", "10"),
        ("10\\text{cm}^2", "10"),  # extension: no space after the brace
        ("\\text{(C)}", "(C)"),
        ("\\text{Monday}", "Monday"),
        (".5", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("-7/3", "\\frac{-7}{3}"),
        ("1{,}000", "1000"),
        ("1,000", "1000"),
        ("1, 2", "1,2"),  # a list, not a thousands number
        ("\\pi r^2", "\\pi r^2"),  # the space that ends `\pi` stays
        ("3\\!\\,\\sqrt{2}", "3\\sqrt{2}"),
        ("4.", "4"),
        ("10 \\text{ cm}.", "10"),  # a final period does not hide the unit
        ("3 \\text{ and } 4", "3and4"),  # not cut at the first `\text{ `: the 4 stays
        ("x \\in [-2, 7]", "[-2,7]"),  # a short left side of `\in`, as of `=`
        ("52_{8}", "52_8"),  # one-character scripts unbraced
        ("x^{2}+1", "x^2+1"),
        ("10^{10}", "10^{10}"),
    ],
)
def test_normalize_math(raw, normalized):
    assert normalize_math(raw) == normalized


@pytest.mark.parametrize(
    ("normalized", "value"),
    [("-3", -3), ("0.25", 0.25), ("\\frac{1}{2}", 0.5), ("-\\frac{3}{4}", -0.75), ("\\pi", None)],
)
def test_math_number(normalized, value):
    got = math_number(normalized)
    assert (got if got is None else float(got)) == value


# -------------------------------------------------------- equality without sympy (fast)
@pytest.mark.parametrize(
    ("prediction", "reference", "method"),
    [
        ("\\dfrac{1}{2}", "0.5", "string"),
        ("\\frac12", "\\frac{1}{2}", "string"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", "string"),
        ("10\\%", "10", "string"),
        ("5^\\circ", "5", "string"),
        ("x = 4", "4", "string"),
        ("\\boxed{}", "\\boxed{}", "string"),
        ("0.3333", "\\frac{1}{3}", "number"),  # within relative 1e-4
        ("2.0", "2", "number"),
        ("-\\frac{6}{4}", "-1.5", "number"),
        ("\\$1{,}000", "1000.00", "number"),
        ("2, -3", "-3, 2", "tuple"),  # "all solutions": any order
        ("(1, 2.0)", "(1,2)", "tuple"),
        ("[0, \\frac12)", "[0,0.5)", "tuple"),
    ],
)
def test_equal_without_sympy(prediction, reference, method):
    got = math_equal(prediction, reference, use_sympy=False)
    assert (got.equal, got.method, got.timed_out) == (True, method, False)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("[1,2)", "(1,2)"),  # intervals: brackets matter
        ("(1,2]", "(1,2)"),
        ("(2,1)", "(1,2)"),  # ordered pairs: order matters
        ("(1,2)", "1,2"),  # a point is not a list of solutions
        ("(1,2,3)", "(1,2)"),
        ("0.33", "\\frac{1}{3}"),  # two significant digits: a rough figure, no answer
        ("0.334", "\\frac{1}{3}"),  # neither rounded nor truncated
        ("-3", "3"),
        ("\\text{Monday}", "\\text{Mondya}"),  # sympy would call these equal products
        ("", "5"),
    ],
)
def test_not_equal(prediction, reference):
    got = math_equal(prediction, reference)
    assert got.equal is False and got.timed_out is False


# The four flaws of the earlier rules, each with the cases that showed it.
@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        # exact answers compare exactly (a relative 1e-4 tolerance accepted all of these)
        ("13535", "13536"),
        (".35625", ".35626"),
        ("\\frac{448}{15625}", "\\frac{448}{15626}"),
        ("1000000", "999999"),
        ("10^{6}", "999999"),  # the same through sympy
        ("0.3563", ".35625"),  # .35625 has a finite expansion: no rounding it
        # a parse of a prefix is no evidence (sympy's lenient parse_latex read `x`, `52`)
        ("x \\in [-2,7]", "x \\in [-2,8]"),
        ("52_8", "52_9"),
        ("x \\in (1, 2]", "x \\ge 1"),
        # nothing is cut after the first `\text{ `
        ("3 \\text{ and } 4", "3 \\text{ and } 5"),
        # equations compare as equations, and different ones differ
        ("y = 2x + 3", "y = 2x + 4"),
        ("y = 2x + 3", "2x + 4 = y"),
    ],
)
def test_the_earlier_false_positives_are_not_equal(prediction, reference):
    got = math_equal(prediction, reference)
    assert got.equal is False and got.timed_out is False, got


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("y = 2x + 3", "2x + 3 = y"),  # sides swapped (once rejected)
        ("2x + 3 = y", "y=2x+3"),
        ("2y = 4x + 6", "y = 2x + 3"),  # one equation, scaled
        ("x = 4", "4 = x"),
        ("x \\in [-2,7]", "[-2, 7]"),
        ("52_{8}", "52_8"),
        ("3 \\text{ and } 4", "3\\text{ and }4"),
        ("0.667", "\\frac{2}{3}"),  # a decimal at the precision it was given: rounded
        ("0.666", "\\frac{2}{3}"),  # or truncated
        ("2\\pi", "6.283"),  # `\pi` is the constant
        ("18.00", "18"),  # a finite expansion, matched exactly
    ],
)
def test_equal_under_the_stated_rules(prediction, reference):
    got = math_equal(prediction, reference)
    assert got.equal, got


@pytest.mark.parametrize(
    ("question", "places"),
    [
        ("Express your answer as a decimal to the nearest tenth.", 1),
        ("Round to the nearest hundredth.", 2),
        ("Give your answer to 3 decimal places.", 3),
        ("to two decimal places", 2),
        ("What is it, to the nearest whole number?", 0),
        ("Express your answer as a common fraction.", None),
        ("nearest tenth ... or nearest hundredth?", None),  # ambiguous: none
        (None, None),
    ],
)
def test_asked_places(question, places):
    assert asked_places(question) == places


def test_the_precision_a_problem_asks_for_decides():
    assert math_equal("3.14", "3.1", places=1).equal  # "to the nearest tenth"
    assert not math_equal("3.14", "3.1").equal  # otherwise 3.1 is an exact answer
    assert not math_equal("3.2", "3.1", places=1).equal
    assert math_equal("\\pi", "3.14", places=2).equal
    assert check_answer("math", "\\boxed{3.14}", "3.1", question="To the nearest tenth?").correct


def test_no_prediction_is_not_equal():
    assert math_equal(None, "5").equal is False


def test_bad_timeout_is_an_error():
    with pytest.raises(ValueError, match="timeout must be positive"):
        math_equal("1", "1", timeout=0)


# ------------------------------------------------------------------------------- sympy
@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("(x+1)^2", "x^2+2x+1"),
        ("\\frac{\\sqrt{2}}{2}", "0.70711"),  # a closed form against its decimal
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),  # tuple, then sympy inside
        ("x + y = 3", "3 = y + x"),  # equations: the same up to sides
        ("\\frac{\\pi}{2}", "\\pi/2"),
    ],
)
def test_equal_by_sympy(prediction, reference):
    got = math_equal(prediction, reference)
    assert got.equal, got
    assert got.method in ("sympy", "tuple")


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("\\sqrt{8}", "3\\sqrt{2}"),
        ("\\infty", "5"),  # inf - 5 is inf: "within tolerance" of nothing
        ("x^2", "x^3"),
        ("y = 2x", "y = 3x"),
        ("\\frac{1}{{", "\\frac{1}{2}"),  # unparsable
    ],
)
def test_not_equal_by_sympy(prediction, reference):
    got = math_equal(prediction, reference)
    assert got.equal is False and got.timed_out is False


# ------------------------------------------------------------------------------ scoring
def test_check_answer_math_fields():
    got = check_answer("math500", "So $\\boxed{\\dfrac{1}{2}}$.", "... $\\boxed{0.5}$")
    assert (got.prediction, got.correct, got.unextractable, got.timed_out) == (
        "\\dfrac{1}{2}",
        True,
        False,
        False,
    )
    assert got.harness is None and "harness" not in got.to_dict()
    none = check_answer("math", "no idea", "\\boxed{3}")
    assert (none.prediction, none.correct, none.unextractable) == (None, False, True)


def test_score_math_completions_by_ours_and_the_papers_grader():
    pairs = [
        ("$\\boxed{\\frac{1}{\\sqrt{2}}}$", "$\\boxed{\\frac{\\sqrt2}{2}}$"),
        ("The answer is $10\\%$.", "\\boxed{10}"),
        ("$\\boxed{[1,2)}$", "\\boxed{(1,2)}"),
        ("I give up", "\\boxed{4}"),
    ]
    scores = score_completions("math", pairs, graders=["gpart", "official"])
    assert scores.summary == {
        "dataset": "math",
        "accuracy": 0.5,
        "total": 4,
        "correct": 2,
        "unextractable": 1,
        "timed_out": 0,
        "grader": "gpart",
        "graders": {
            "gpart": {"accuracy": 0.5, "correct": 2, "unextractable": 1, "timed_out": 0},
            # no LaTeX parse there, and "The answer is" reads "$10\\%$" with its dollars
            "official": {"accuracy": 0.0, "correct": 0, "unextractable": 1, "timed_out": 0},
        },
        "disagreements": {"gpart/official": 2},
    }
    assert scores.verdicts(1) == {
        "gpart": {"prediction": "10\\%", "correct": True, "timed_out": False},
        "official": {"prediction": "$10\\%$", "correct": False, "timed_out": False},
    }
