"""The sympy side of MATH answer checking, run in its own process (``python -m``).

`gpart.evaluation.equivalence.SympyWorker` starts this module once and keeps it: it prints
``ready`` after importing sympy, then answers one JSON request per line (``{"a": ..., "b":
..., "rule": "gpart", "places": null}``: two answers, whose rules compare them, and the
precision a problem asks for) with one JSON line (``{"equal": bool, "error": str |
null}``). A check that runs too long is stopped by killing the process, the one reliable
way to stop sympy from any thread (``signal.alarm`` works only in the main thread of the
main interpreter, and sympy's C-level big-integer work ignores it anyway).

`sympy_equal` is importable for in-process use; it has no time limit of its own.
"""

from __future__ import annotations

import cmath
import json
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from gpart.evaluation.answers import (
    MIN_SIGNIFICANT_DIGITS,
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


def _constants_equal(ea: Any, eb: Any, a: str, b: str, places: int | None) -> bool:
    """Two constants whose difference sympy could not simplify to 0 (see `sympy_equal`)."""
    from sympy import Float

    va, vb = _value(ea, 2 * IDENTICAL_DIGITS), _value(eb, 2 * IDENTICAL_DIGITS)
    if va is None or vb is None:
        return False
    if places is not None:  # the problem asks for a precision: both rounded to it
        if va.imag or vb.imag:
            return False
        digits = 2 * IDENTICAL_DIGITS + places
        ra, rb = (round_half_up(Fraction(str(e.evalf(digits))), places) for e in (ea, eb))
        return ra == rb
    approximate = [side for side, e in ((a, ea), (b, eb)) if e.atoms(Float)]
    if not approximate:  # exact against exact: identical values, not close ones
        scale = max(abs(va), abs(vb))
        return abs(va - vb) <= scale * 10.0**-IDENTICAL_DIGITS
    if len(approximate) == 2:
        return False  # two decimals with different values: numbers_equal's case
    # a decimal against a closed form: at the decimal's precision, as numbers_equal
    form = decimal_form(approximate[0])
    other = eb if approximate[0] == a else ea
    exact = _exact_rational(other)
    if form is None or (exact is not None and terminates(exact)) or va.imag or vb.imag:
        return False
    places_given, significant = form
    closed = Fraction(str(other.evalf(2 * IDENTICAL_DIGITS + places_given)))
    return significant >= MIN_SIGNIFICANT_DIGITS and decimal_stands_for(
        Fraction(approximate[0]), places_given, closed
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


def sympy_equal(a: str, b: str, places: int | None = None) -> bool:
    """Whether two normalised LaTeX answers are equal as sympy expressions (our rules).

    Both must parse whole (`_parse`). Then they are equal when ``simplify(a - b)`` is 0;
    two equations when they are one equation (`_equations_equal`; other relations are not
    compared); two constants also when exact forms have identical values (to
    `IDENTICAL_DIGITS`), or a decimal and a closed form without a finite expansion agree
    to less than one unit in the decimal's last place (``0.70711`` = ``\\frac{\\sqrt2}{2}``;
    at least three significant digits), or, with `places`, both round to the same number.
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
    return _constants_equal(ea, eb, a, b, places)


RULES: dict[str, Callable[..., bool]] = {"gpart": sympy_equal}


def answer(request: dict[str, Any]) -> bool:
    """One request's verdict under its ``rule`` (default ``gpart``)."""
    rule = request.get("rule", "gpart")
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r} (known: {', '.join(RULES)})")
    options = {"places": request["places"]} if request.get("places") is not None else {}
    return bool(RULES[rule](request["a"], request["b"], **options))


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
            reply = {"equal": answer(json.loads(line)), "error": None}
        except Exception as err:  # one bad request must not end the worker
            reply = {"equal": False, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), file=stdout, flush=True)


if __name__ == "__main__":
    serve()
