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
from gpart.evaluation.answers import Rounding, asked_places, asked_rounding, math_number


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
        ("3 \\text{ and } 4", "3,4"),  # not cut at the first `\text{ `: the 4 stays
        ("3 and 4", "3,4"),  # a list joined by a word is a list
        ("1, 2, \\text{and } 3", "1,2,3"),
        ("1, 2, and 3", "1,2,3"),
        ("\\text{band}", "band"),  # whole words only
        ("a \\land b", "a\\land b"),
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
        ("0.33", "\\frac{1}{3}"),  # a decimal is no exact answer (unless asked for)
        ("0.3333", "\\frac{1}{3}"),  # however many digits
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
        ("2\\pi", "6.283"),  # `\pi` is the constant; at the decimal reference's precision
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
        ("How much does she pay, to the nearest cent?", 2),
        ("to the nearest centimeter", None),  # a unit, not "cent"
        ("Express your answer as a common fraction.", None),
        ("nearest tenth ... or nearest hundredth?", None),  # ambiguous: none
        (None, None),
    ],
)
def test_asked_places(question, places):
    assert asked_places(question) == places


@pytest.mark.parametrize(
    ("question", "asked"),
    [
        ("Express your answer as a decimal to the nearest tenth.", True),
        ("Express your answer as a decimal.", True),
        ("Express $\\frac{31}{2\\cdot5^6}$ as a terminating decimal.", True),
        ("What is $\\sqrt{53}$ rounded to the nearest integer?", True),
        ("Round your answer to the nearest hundred.", True),  # asked, places not named
        ("Give the answer in decimal form.", True),
        ("Give your answer to three significant figures.", True),
        ("Approximately how many gallons are left?", True),
        ("Express the repeating decimal $0.\\overline{3}$ as a common fraction.", False),
        ("Eight people sit around a round table. In each round ...", False),
        ("Find the point on the line nearest to $(1,2)$.", False),
        ("What is the 20th digit after the decimal point of $\\frac{1}{7}$?", False),
    ],
)
def test_asked_rounding(question, asked):
    got = asked_rounding(question)
    assert got.known and got.asked is asked and got.places == asked_places(question)


def test_an_unknown_problem_is_not_known():
    assert asked_rounding(None) == asked_rounding("  ") == Rounding(False, False, None)


# The decimal rules, case by case: the problem's text decides whether a decimal is an
# answer. NONE: the problem is not known; PLAIN: known, and it asks for no rounding.
NONE = None
PLAIN = "What is the value of $x$?"
DECIMAL = "Express your answer as a decimal."
TENTH = "Express your answer as a decimal to the nearest tenth."
HUNDREDTH = "Round your answer to the nearest hundredth."
THREE_PLACES = "Give the answer to three decimal places."
WHOLE = "What is it, to the nearest whole number?"
PERCENT_TENTH = "What percent is left? Express your answer to the nearest tenth."
CENT = "How much does she pay, to the nearest cent?"


@pytest.mark.parametrize(
    ("prediction", "reference", "question", "equal"),
    [
        # an exact reference: a decimal is wrong unless the problem asks for one
        ("0.33", "\\frac{1}{3}", NONE, False),
        ("0.33", "\\frac{1}{3}", PLAIN, False),
        ("0.33", "\\frac{1}{3}", HUNDREDTH, True),  # both rounded to the places asked
        ("0.333", "\\frac{1}{3}", HUNDREDTH, True),
        ("0.34", "\\frac{1}{3}", HUNDREDTH, False),
        ("0.333", "\\frac{1}{3}", NONE, False),
        ("0.333", "\\frac{1}{3}", DECIMAL, True),  # no places named: at its own precision
        ("0.33", "\\frac{1}{3}", DECIMAL, False),  # two significant digits: a rough figure
        ("0.334", "\\frac{1}{3}", DECIMAL, False),  # neither rounded nor truncated
        ("0.667", "\\frac{2}{3}", DECIMAL, True),  # rounded
        ("0.666", "\\frac{2}{3}", DECIMAL, True),  # or truncated
        ("0.667", "\\frac{2}{3}", THREE_PLACES, True),
        ("0.666", "\\frac{2}{3}", THREE_PLACES, False),  # asked to round: rounded
        ("1.41", "\\sqrt{2}", NONE, False),  # through sympy: the same rules
        ("1.414", "\\sqrt{2}", PLAIN, False),
        ("1.41", "\\sqrt{2}", HUNDREDTH, True),
        ("1.414", "\\sqrt{2}", DECIMAL, True),
        ("1.42", "\\sqrt{2}", HUNDREDTH, False),
        ("0.79", "\\pi/4", NONE, False),
        ("0.79", "\\frac{\\pi}{4}", HUNDREDTH, True),
        ("2.83", "3", NONE, False),  # an integer is exact
        ("2.83", "3", WHOLE, True),
        ("3.0", "3", NONE, True),  # equal values are equal, whatever the problem
        ("3", "3.0", PLAIN, True),
        ("\\frac{1}{2}", "0.5", PLAIN, True),
        ("0.5", "\\frac{1}{2}", NONE, True),
        ("0.50", "\\frac{1}{2}", PLAIN, True),
        # a decimal reference: at its own precision, unless the problem is known and asks
        # for no rounding (then the decimal is exact)
        ("1.414", "1.41", NONE, True),
        ("1.414", "1.41", HUNDREDTH, True),
        ("1.414", "1.41", DECIMAL, True),
        ("1.414", "1.41", PLAIN, False),
        ("1.4", "1.41", NONE, False),  # less precise than the reference
        ("1.42", "1.41", NONE, False),
        ("1.415", "1.41", NONE, False),  # rounds (half up) to 1.42
        ("-1.414", "-1.41", NONE, True),
        ("\\sqrt{2}", "1.41", NONE, True),  # a closed form at the reference's precision
        ("\\sqrt{2}", "1.4", NONE, True),
        ("\\sqrt{2}", "1.41", PLAIN, False),
        ("\\sqrt{3}", "1.41", NONE, False),
        ("\\frac{1}{3}", "0.33", NONE, True),
        ("\\frac{1}{3}", "0.33", PLAIN, False),
        ("3.14", "3.1", NONE, True),
        ("3.14", "3.1", TENTH, True),
        ("3.14", "3.1", PLAIN, False),
        ("3.2", "3.1", TENTH, False),
        ("\\pi", "3.14", HUNDREDTH, True),
        ("0.3563", ".35625", NONE, False),  # fewer places than the reference
        ("0.356251", ".35625", PLAIN, False),
        # percentages and money: the number as written, the sign dropped
        ("33.33\\%", "33.3\\%", PERCENT_TENTH, True),
        ("33\\%", "33.3\\%", NONE, False),
        ("\\frac{100}{3}\\%", "33.3\\%", NONE, True),
        ("0.5", "50\\%", NONE, False),  # a fraction is not the percentage
        ("\\$18.50", "18.5", PLAIN, True),
        ("18.499", "\\$18.50", CENT, True),
        ("18.499", "\\$18.50", PLAIN, False),
        ("18.5", "19", CENT, False),  # an exact reference, places asked: both rounded
        # in tuples, element by element
        ("(0.33, 1)", "(\\frac{1}{3}, 1)", NONE, False),
        ("(0.33, 1)", "(\\frac{1}{3}, 1)", HUNDREDTH, True),
    ],
)
def test_decimals_by_what_the_problem_asks(prediction, reference, question, equal):
    got = math_equal(prediction, reference, question=question)
    assert got.equal is equal and not got.timed_out, got
    completion = f"so $\\boxed{{{prediction}}}$"
    assert check_answer("math", completion, reference, question=question).correct is equal


def test_places_without_the_problem_decide_as_the_problem_would():
    assert math_equal("3.14", "3.1", places=1).equal
    assert not math_equal("3.2", "3.1", places=1).equal
    assert math_equal("\\pi", "3.14", places=2).equal
    assert math_equal("0.33", "\\frac{1}{3}", places=2).equal
    assert math_equal("0.33", "\\frac{1}{3}", places=2, question=PLAIN).equal


@pytest.mark.parametrize(
    ("prediction", "reference", "equal"),
    [
        ("3, 4", "3 \\text{ and } 4", True),
        ("3 \\text{ and } 4", "3, 4", True),
        ("4, 3", "3 \\text{ and } 4", True),  # an unbracketed list: any order
        ("3 and 4", "4,3", True),
        ("1, 2, 3", "1, 2, \\text{ and } 3", True),
        ("3, \\text{and } \\frac{1}{2}", "0.5 \\text{ and } 3", True),
        ("-2 \\text{ and } 5", "5, -2", True),
        ("3 \\text{ and } 5", "3, 4", False),
        ("3, 4, 5", "3 \\text{ and } 4", False),
        ("3 and 4", "(3, 4)", False),  # a point is not a list of solutions
        ("3 \\text{ or } 4", "3, 4", False),  # only "and" joins a list
    ],
)
def test_a_list_joined_by_words_is_the_same_list(prediction, reference, equal):
    got = math_equal(prediction, reference)
    assert got.equal is equal and not got.timed_out, got


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
