"""The sympy side of MATH answer checking, run in its own process (``python -m``).

`gpart.evaluation.equivalence.SympyWorker` starts this module once and keeps it: it prints
``ready`` after importing sympy, then answers one JSON request per line (``{"a": ..., "b":
...}``, two normalised LaTeX answers) with one JSON line (``{"equal": bool, "error":
str | null}``). A check that runs too long is stopped by killing the process, the one
reliable way to stop sympy from any thread (``signal.alarm`` works only in the main thread
of the main interpreter, and sympy's C-level big-integer work ignores it anyway).

`sympy_equal` is importable for in-process use; it has no time limit of its own.
"""

from __future__ import annotations

import cmath
import json
import sys

# Relative tolerance for two closed-form numbers (`\frac{\sqrt{2}}{2}` vs `0.7071`), the same
# as the string-side numeric check in `gpart.evaluation.equivalence`.
REL_TOL = 1e-4


def sympy_equal(a: str, b: str) -> bool:
    """Whether two LaTeX answers are equal as sympy expressions.

    Equal when sympy parses both (``sympy.parsing.latex.parse_latex``, ANTLR backend) and
    ``simplify(a - b)`` is 0, or both are constants within `REL_TOL`. Two equations (``y =
    2x``) are equal when their ``lhs - rhs`` are. Unparsable input is not equal.
    """
    from sympy import Eq, simplify
    from sympy.core.relational import Relational
    from sympy.parsing.latex import parse_latex

    try:
        ea, eb = parse_latex(a), parse_latex(b)
    except Exception:  # LaTeXParsingError, and the odd TypeError sympy raises on bad input
        return False
    if ea == eb:
        return True
    if isinstance(ea, Relational) or isinstance(eb, Relational):
        if not (isinstance(ea, Eq) and isinstance(eb, Eq)):
            return False
        # `y = 2x` and `2x = y` are the same equation: lhs - rhs equal up to sign
        da, db = ea.lhs - ea.rhs, eb.lhs - eb.rhs
        return simplify(da - db) == 0 or simplify(da + db) == 0
    diff = simplify(ea - eb)
    if diff == 0:
        return True
    if diff.free_symbols or ea.free_symbols or eb.free_symbols:
        return False
    try:
        va, vb = complex(ea.evalf()), complex(eb.evalf())
    except (TypeError, ValueError, OverflowError):  # not a number after all
        return False
    if not all(map(cmath.isfinite, (va, vb))):  # oo - 5 is oo: "within tolerance" of inf
        return False
    return abs(va - vb) <= REL_TOL * max(abs(va), abs(vb))


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
            request = json.loads(line)
            reply = {"equal": bool(sympy_equal(request["a"], request["b"])), "error": None}
        except Exception as err:  # one bad request must not end the worker
            reply = {"equal": False, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), file=stdout, flush=True)


if __name__ == "__main__":
    serve()
