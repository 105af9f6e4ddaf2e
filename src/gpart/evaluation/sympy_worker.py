"""The sympy side of MATH answer checking, run in its own process (``python -m``).

`gpart.evaluation.equivalence.SympyWorker` starts this module once and keeps it: it prints
``ready`` after importing sympy, then answers one JSON request per line (``{"a": ..., "b":
..., "rule": "gpart", "rounding": {"known": true, "asked": false, "places": null}}``: the
prediction and the reference, whose rules compare them (`RULES`: ours, the paper's
symbolic step, math-verify), and what the problem says about rounding, ours only) with
one JSON line (``{"equal": bool, "error": str | null}``, plus what the rule reports). A
check that runs too long is stopped by killing the process, the one reliable
way to stop sympy from any thread (``signal.alarm`` works only in the main thread of the
main interpreter, and sympy's C-level big-integer work ignores it anyway).

`sympy_equal` is importable for in-process use; it has no time limit of its own.
"""

from __future__ import annotations

import cmath
import json
import math
import re
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from gpart.evaluation.answers import (
    MIN_SIGNIFICANT_DIGITS,
    Rounding,
    decimal_form,
    decimal_stands_for,
    round_half_up,
    terminates,
)

# Two exact closed forms that simplify cannot reduce to one another (nested radicals) are
# equal when they agree to this many significant digits, evaluated at twice as many: far
# below any difference between distinct answers (`10^6` and `999999` differ at 1e-6).
IDENTICAL_DIGITS = 15


def _parse(text: str) -> Any:
    """sympy's ``parse_latex`` in strict mode: the whole string or an error. Without it
    the ANTLR parser recovers by dropping what it cannot read (``x \\in [-2,7]`` parses
    as ``in*x``, ``52_8`` as ``52``), and a parse of a prefix is no evidence of equality.
    ``\\pi`` is the constant."""
    from sympy import Symbol, pi
    from sympy.parsing.latex import parse_latex

    # the parser reads `\pi` as a symbol named pi; it is the constant in every MATH answer
    return parse_latex(text, strict=True).subs(Symbol("pi"), pi)


def _value(expr: Any, digits: int) -> complex | None:
    try:
        value = complex(expr.evalf(digits))
    except (TypeError, ValueError, OverflowError):  # not a number after all
        return None
    return value if cmath.isfinite(value) else None  # oo - 5 is oo: no number to compare


def _exact_rational(expr: Any) -> Fraction | None:
    from sympy import Rational

    return Fraction(int(expr.p), int(expr.q)) if isinstance(expr, Rational) else None


def _decimal_places(text: str, expr: Any) -> int | None:
    """The places of `text` when it is a plain decimal literal (``-0.035``: 3), else None
    (an integer, a closed form, or a decimal inside an expression)."""
    from sympy import Float

    form = decimal_form(text)
    return form[0] if form is not None and expr.atoms(Float) else None


def _constants_equal(ea: Any, eb: Any, a: str, b: str, rounding: Rounding) -> bool:
    """Prediction `ea` (text `a`) and reference `eb` (text `b`), two constants whose
    difference sympy could not simplify to 0 (see `sympy_equal`)."""
    from sympy import Float

    va, vb = _value(ea, 2 * IDENTICAL_DIGITS), _value(eb, 2 * IDENTICAL_DIGITS)
    if va is None or vb is None:
        return False

    def at(expr: Any, places: int) -> Fraction:  # exact enough to round at `places`
        return Fraction(str(expr.evalf(2 * IDENTICAL_DIGITS + places)))

    if rounding.places is not None:  # the problem asks for a precision: both rounded to it
        if va.imag or vb.imag:
            return False
        places = rounding.places
        return round_half_up(at(ea, places), places) == round_half_up(at(eb, places), places)
    pred_float, ref_float = bool(ea.atoms(Float)), bool(eb.atoms(Float))
    if not pred_float and not ref_float:  # exact against exact: identical values
        scale = max(abs(va), abs(vb))
        return abs(va - vb) <= scale * 10.0**-IDENTICAL_DIGITS
    if (pred_float and ref_float) or va.imag or vb.imag:
        return False  # two decimals with different values: numbers_equal's case
    if ref_float:  # a decimal reference: the closed form at its precision, as numbers_equal
        places = _decimal_places(b, eb)
        return (
            places is not None
            and rounding.reference_rounded
            and round_half_up(at(ea, places), places) == Fraction(b)
        )
    # a decimal for a closed form: only where a rounded answer is asked for, at the
    # decimal's precision, as numbers_equal
    form = decimal_form(a)
    exact = _exact_rational(eb)
    if not rounding.asked or form is None or (exact is not None and terminates(exact)):
        return False
    places, significant = form
    return significant >= MIN_SIGNIFICANT_DIGITS and decimal_stands_for(
        Fraction(a), places, at(eb, places)
    )


def _equations_equal(ea: Any, eb: Any) -> bool:
    """``lhs - rhs`` of one a nonzero constant multiple of the other's: ``y = 2x + 3``,
    ``2x + 3 = y`` and ``2y = 4x + 6`` are one equation."""
    from sympy import simplify

    da, db = ea.lhs - ea.rhs, eb.lhs - eb.rhs
    if simplify(da - db) == 0 or simplify(da + db) == 0:
        return True
    if db == 0:
        return False
    ratio = simplify(da / db)
    return bool(ratio.is_number and ratio != 0 and ratio.is_finite)


def sympy_equal(a: str, b: str, rounding: Rounding | None = None) -> bool:
    """Whether a normalised LaTeX prediction `a` equals the reference `b` as sympy
    expressions (our rules).

    Both must parse whole (`_parse`). Then they are equal when ``simplify(a - b)`` is 0;
    two equations when they are one equation (`_equations_equal`; other relations are not
    compared); two constants also when exact forms have identical values (to
    `IDENTICAL_DIGITS`), or by the decimal rules of
    `gpart.evaluation.answers.numbers_equal` with `rounding` (None: the problem is not
    known): a decimal reference against a closed form at the reference's precision
    (``\\frac{\\sqrt2}{2}`` = ``0.70711``), a decimal prediction for a closed form only
    where the problem asks for a rounded answer, both rounded where it names the places.
    Unparsable input is not equal.
    """
    from sympy import Eq, simplify
    from sympy.core.relational import Relational

    try:
        ea, eb = _parse(a), _parse(b)
    except Exception:  # LaTeXParsingError, and the odd TypeError sympy raises on bad input
        return False
    if ea == eb:
        return True
    if isinstance(ea, Relational) or isinstance(eb, Relational):
        return isinstance(ea, Eq) and isinstance(eb, Eq) and _equations_equal(ea, eb)
    if simplify(ea - eb) == 0:
        return True
    if ea.free_symbols or eb.free_symbols:
        return False
    return _constants_equal(ea, eb, a, b, rounding or Rounding())


# ------------------------------------------------------------- the paper's symbolic step
# sympy's parse_expr is Python's eval underneath. The paper's grader hands it model output
# as is; here text that could build a string (quotes), reach an attribute (`x.name`) or a
# dunder never reaches it, and the names it resolves exclude Python's builtins and
# sympy's printers and parsers: without a string to hand on, nothing can make sympy eval
# text of its own. No MATH answer has any of these.
_UNSAFE_RE = re.compile(r"__|['\"`]|\.\s*[A-Za-z_]")
_SAFE_BUILTINS = ("abs", "divmod", "pow", "round", "sum")
_UNSAFE_NAMES = ("sympify", "S", "lambdify", "parse_expr", "var", "symbols", "preview",
                 "init_printing", "init_session", "python", "capture", "evaluate")  # fmt: skip
_namespace: dict[str, Any] | None = None


def _expr_namespace() -> dict[str, Any]:
    """parse_expr's default names (``from sympy import *``, min/max as Min/Max), less the
    builtins and the names that turn text into code or code into text (see above)."""
    global _namespace
    if _namespace is None:
        import builtins

        import sympy.printing
        from sympy import Max, Min

        names: dict[str, Any] = {}
        exec("from sympy import *", names)  # what parse_expr itself starts from
        for name in (*sympy.printing.__all__, *_UNSAFE_NAMES):
            names.pop(name, None)
        names.update({name: getattr(builtins, name) for name in _SAFE_BUILTINS})
        names.update({"max": Max, "min": Min, "__builtins__": {}})
        _namespace = names
    return _namespace


def _parse_expr(text: str, *, sympify_like: bool) -> Any:
    """sympy's ``parse_expr`` on the safe names; `sympify_like` adds the transformations
    ``sympify(text, rational=True)`` (what ``N`` calls) adds: ``^`` as power, decimals as
    rationals.

    Raises:
        ValueError: text kept from sympy (`_UNSAFE_RE`); anything parse_expr raises.
    """
    from sympy.parsing.sympy_parser import (
        convert_xor,
        parse_expr,
        rationalize,
        standard_transformations,
    )

    if _UNSAFE_RE.search(text):
        raise ValueError("not handed to parse_expr")
    extra = (rationalize, convert_xor) if sympify_like else ()
    return parse_expr(
        text.replace("\n", "") if sympify_like else text,
        global_dict=dict(_expr_namespace()),
        transformations=standard_transformations + extra,
    )


def official_symbolic_equal(a: str, b: str) -> bool:
    """The paper grader's ``symbolic_equal`` as its environment ran it
    (`gpart.evaluation.official`): ``parse_latex`` always failed there, so each side is
    ``parse_expr``-ed or kept as the string; equal when ``simplify(a - b) == 0``, else when
    ``N(a)`` and ``N(b)`` are within relative 1e-3 (``N`` sympifies a string itself).
    Whatever raises on the way counts as not equal, as the paper's bare ``except`` did."""
    from sympy import Basic, simplify

    def parsed(text: str) -> Any:
        try:
            return _parse_expr(text, sympify_like=False)
        except Exception:
            return text

    def numeric(value: Any) -> Any:
        if not isinstance(value, Basic):  # N's sympify(value, rational=True)
            value = _parse_expr(str(value), sympify_like=True)
        return value.evalf(15)

    ea, eb = parsed(a), parsed(b)
    try:
        if simplify(ea - eb) == 0:
            return True
    except Exception:
        pass
    try:
        return math.isclose(numeric(ea), numeric(eb), rel_tol=1e-3)
    except Exception:
        return False


# ------------------------------------------------------------------------- math-verify
def math_verify_check(completion: str, reference: str) -> dict[str, Any]:
    """Hugging Face math-verify's verdict: ``parse`` the completion (its default LaTeX and
    expression extraction) and the reference (boxed, as a gold answer), then ``verify``.
    Its own signal-based timeouts are off: the worker's kill is the time limit.

    Returns:
        ``{"equal": bool, "prediction": str | None}`` (the extracted answer's text).
    """
    from math_verify import parse, verify

    gold = parse(f"$\\boxed{{{reference}}}$", parsing_timeout=None)
    pred = parse(completion, parsing_timeout=None)
    equal = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
    return {"equal": equal, "prediction": str(pred[-1]) if pred else None}


RULES: dict[str, Callable[..., Any]] = {
    "gpart": sympy_equal,
    "official": official_symbolic_equal,
    "math-verify": math_verify_check,
}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """One request's reply under its ``rule`` (default ``gpart``): ``{"equal": bool}``
    and whatever else the rule reports."""
    rule = request.get("rule", "gpart")
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r} (known: {', '.join(RULES)})")
    rounding = Rounding(**request["rounding"]) if request.get("rounding") else None
    if request.get("places") is not None:  # places alone, as math_equal(places=) takes them
        rounding = Rounding(known=True, asked=True, places=request["places"])
    options = {"rounding": rounding} if rule == "gpart" and rounding else {}
    got = RULES[rule](request["a"], request["b"], **options)
    return got if isinstance(got, dict) else {"equal": bool(got)}


def serve(stdin=None, stdout=None) -> None:
    """Answer requests from `stdin` until it closes (the parent closed it or died)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    # before "ready": loading the parser and sympy's first simplify (caches; ~3 s) is startup,
    # not the first check's time
    sympy_equal("\\sqrt{8}", "2\\sqrt{2}")

    print("ready", file=stdout, flush=True)
    for line in stdin:
        try:
            reply = {**answer(json.loads(line)), "error": None}
        except Exception as err:  # one bad request must not end the worker
            reply = {"equal": False, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), file=stdout, flush=True)


if __name__ == "__main__":
    serve()
