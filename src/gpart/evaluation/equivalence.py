"""Is a MATH prediction equal to the reference? Strings, numbers, tuples, then sympy.

`math_equal` tries the cheap checks first and calls sympy only when they cannot decide:

1. the normalised strings match (`gpart.evaluation.answers.normalize_math`, as the MATH
   reference's ``is_equiv`` does; most correct answers stop here);
2. both are numbers (``0.5``, ``\\frac{1}{2}``, ``-3``): exact answers compare exactly; a
   decimal is no exact answer unless the problem asks for a rounded or decimal one, and a
   decimal reference is compared at its own precision
   (`gpart.evaluation.answers.numbers_equal`), with no sympy call;
3. both are tuples or intervals (``(1,2)``, ``[1,2)``, ``\\{1,2\\}``): the same brackets and
   element-wise equal; unbracketed lists (``1, -2``, ``1 and -2``: "enter all solutions")
   match in any order;
4. sympy proves the difference zero, in a `SympyWorker` subprocess with a time limit. A
   check that runs out of time counts as not equal and is reported (``timed_out``).

An equation compares with an equation: when only one side still has its ``=`` after the
short left-hand side is dropped (``y = 2x + 3`` against ``2x + 3 = y``), both are
normalised again with their left-hand sides kept and compared as equations.

Plain words (``Monday``, ``(C)``) never reach sympy, which would read ``Monday`` as the
product ``M*o*n*d*a*y`` and find it equal to ``Mondya``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from gpart.evaluation.answers import (
    Rounding,
    asked_rounding,
    math_number_form,
    normalize_math,
    numbers_equal,
)

# Seconds one sympy check may take. MATH answers that sympy can prove equal take well under
# a second; a few seconds leave room for a loaded machine without letting a pathological
# expansion (`(a+b+c+d+e+1)^{15}`: ~30 s) stall an evaluation.
DEFAULT_TIMEOUT = 3.0
# Seconds the worker may take to start (import sympy, load the LaTeX parser, warm caches).
STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class Equivalence:
    """The outcome of one comparison.

    Attributes:
        equal: the answers are equal.
        timed_out: the sympy check ran out of time (or its worker died); `equal` is False.
        method: what decided: ``string``, ``number``, ``tuple``, ``sympy``, ``none`` (nothing
            could show them equal), ``timeout``.
    """

    equal: bool
    timed_out: bool = False
    method: str = "none"


class SympyWorker:
    """One persistent subprocess that runs sympy checks; killed and restarted on a timeout.

    A subprocess (``python -m gpart.evaluation.sympy_worker``) rather than
    `multiprocessing`: it never re-imports the caller's ``__main__`` (``spawn`` and
    ``forkserver`` both do, so a script without a ``__main__`` guard would run twice), and
    killing it is the only way to stop sympy that works from any thread. Safe to share
    between threads (one check at a time); after a ``fork`` the child starts its own worker
    and leaves the parent's alone.
    """

    def __init__(self, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.startup_timeout = startup_timeout
        self.restarts = 0  # workers killed for a timeout or found dead
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] | None = None
        self._pid = os.getpid()
        self._warm: set[str] = set()

    def _start(self) -> None:
        env = dict(os.environ)
        # the worker must import this very gpart, installed or not
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpart.evaluation.sympy_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # the ANTLR runtime prints parse warnings there
            text=True,
            encoding="utf-8",
            bufsize=1,
            env=env,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # a thread, so that waiting for a reply can time out
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="gpart-sympy-pump", daemon=True).start()
        self._proc, self._lines, self._pid = proc, lines, os.getpid()
        self._warm = {"gpart"}  # rules whose packages the worker has imported (startup: ours)
        try:
            ready = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            ready = None
        if ready is None or ready.strip() != "ready":
            self._kill()
            raise RuntimeError(
                "the sympy worker (python -m gpart.evaluation.sympy_worker) did not start "
                f"within {self.startup_timeout:g} s; run that command to see its error"
            )

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
        self._proc, self._lines = None, None

    def equal(
        self, a: str, b: str, timeout: float = DEFAULT_TIMEOUT, **options: Any
    ) -> bool | None:
        """Whether sympy finds `a` and `b` equal; None when it ran out of `timeout` seconds
        (the worker is then killed and the next call starts a fresh one).

        Args:
            a: one answer, as `gpart.evaluation.sympy_worker.sympy_equal` takes it.
            b: the other.
            timeout: seconds the check may take.
            **options: the rest of the request (`gpart.evaluation.sympy_worker.serve`):
                ``rule`` (whose rules: ``gpart``, ``official``, ``math-verify``),
                ``rounding`` (what the problem asks: `gpart.evaluation.answers.Rounding`
                as a dict).

        Raises:
            RuntimeError: the worker could not start.
        """
        reply = self.ask({"a": a, "b": b, **options}, timeout=timeout)
        return None if reply is None else bool(reply["equal"])

    def ask(self, request: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict | None:
        """The worker's whole reply to one request (`equal` is the common case), or None
        when it ran out of `timeout` seconds. A rule's first request in a fresh worker
        may take the startup time as well: it imports that rule's packages (math-verify
        loads its own grammar), which is no check's time.

        Raises:
            RuntimeError: the worker could not start.
        """
        with self._lock:
            if self._pid != os.getpid():  # forked: that worker is the parent's
                self._proc, self._lines = None, None
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self.restarts += 1
                    self._kill()
                self._start()
            assert self._proc is not None and self._lines is not None
            rule = request.get("rule", "gpart")
            if rule not in self._warm:
                timeout = max(timeout, self.startup_timeout)
            try:
                self._proc.stdin.write(json.dumps(request) + "\n")
                self._proc.stdin.flush()
                line = self._lines.get(timeout=timeout)
            except (queue.Empty, BrokenPipeError, OSError):
                line = None
            if line is None:  # out of time, or the worker died (e.g. out of memory)
                self.restarts += 1
                self._kill()
                return None
            self._warm.add(rule)
            return json.loads(line)

    def close(self) -> None:
        """Stop the worker (a later call starts a new one)."""
        with self._lock:
            if self._pid == os.getpid():
                self._kill()
            self._proc, self._lines = None, None


_default_worker: SympyWorker | None = None
_default_lock = threading.Lock()


def default_worker() -> SympyWorker:
    """The process-wide worker `math_equal` uses; started on the first sympy check."""
    global _default_worker
    with _default_lock:
        if _default_worker is None:
            _default_worker = SympyWorker()
            atexit.register(_default_worker.close)
        return _default_worker


# ------------------------------------------------------------------ tuples and intervals
_OPEN = {"(": ")", "[": "]", "\\{": "\\}"}
_CLOSE = {")", "]", "\\}"}


def _split_top_level(s: str) -> list[str]:
    """Split at commas outside any brackets or braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _sequence(s: str) -> tuple[str, str, list[str]] | None:
    """(open, close, elements) of a normalised tuple/interval/set of at least two
    elements; ``("", "", elements)`` for an unbracketed list; None otherwise."""
    for open_, close_ in (("\\{", "\\}"), ("(", ")"), ("[", ")"), ("(", "]"), ("[", "]")):
        if s.startswith(open_) and s.endswith(close_) and len(s) > len(open_) + len(close_):
            inner = s[len(open_) : -len(close_)]
            # the outer brackets must enclose everything: not `(1,2)+(3,4)`
            depth = 0
            for ch in inner:
                depth += (ch in "([{") - (ch in ")]}")
                if depth < 0:
                    break
            else:
                parts = _split_top_level(inner) if depth == 0 else []
                if len(parts) >= 2:
                    return open_, close_, parts
    parts = _split_top_level(s)
    return ("", "", parts) if len(parts) >= 2 else None


# --------------------------------------------------------------------------------- main
def _is_wordy(s: str) -> bool:
    """Text sympy would misread: a run of 3+ letters that is no control word (``\\pi``)."""
    return re.search(r"(?<![\\A-Za-z])[A-Za-z]{3,}", s) is not None or "\\begin" in s


@dataclass(frozen=True)
class _Check:
    """The settings of one `math_equal` call, handed down to tuple elements."""

    timeout: float
    worker: SympyWorker | None
    use_sympy: bool
    rounding: Rounding

    def sympy(self, a: str, b: str) -> Equivalence:
        if not self.use_sympy or _is_wordy(a) or _is_wordy(b):
            return Equivalence(False)
        worker = self.worker if self.worker is not None else default_worker()
        got = worker.equal(a, b, timeout=self.timeout, rounding=asdict(self.rounding))
        if got is None:
            return Equivalence(False, timed_out=True, method="timeout")
        return Equivalence(got, method="sympy" if got else "none")


def _equal_normalized(a: str, b: str, check: _Check) -> Equivalence:
    """Normalised prediction `a` against normalised reference `b` (the order matters: the
    reference's form decides how decimals compare)."""
    if a == b:
        return Equivalence(True, method="string")
    if not a or not b:
        return Equivalence(False)
    na, nb = math_number_form(a), math_number_form(b)
    if na is not None and nb is not None:
        return Equivalence(numbers_equal(na, nb, check.rounding), method="number")
    sa, sb = _sequence(a), _sequence(b)
    if sa is not None or sb is not None:
        if sa is None or sb is None or sa[:2] != sb[:2] or len(sa[2]) != len(sb[2]):
            return Equivalence(False, method="tuple")
        timed_out = False
        if sa[0]:  # bracketed: in order
            for x, y in zip(sa[2], sb[2], strict=True):
                got = _equal_normalized(x, y, check)
                timed_out |= got.timed_out
                if not got.equal:
                    return Equivalence(False, timed_out, "tuple")
            return Equivalence(True, method="tuple")
        left = list(sb[2])  # unbracketed list: any order
        for x in sa[2]:
            for k, y in enumerate(left):
                got = _equal_normalized(x, y, check)
                timed_out |= got.timed_out
                if got.equal:
                    del left[k]
                    break
            else:
                return Equivalence(False, timed_out, "tuple")
        return Equivalence(True, method="tuple")
    return check.sympy(a, b)


def _is_equation(s: str) -> bool:
    return s.count("=") == 1 and not re.search(r"[<>!]=|=[<>]", s)


def math_equal(
    prediction: str | None,
    reference: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
    use_sympy: bool = True,
    places: int | None = None,
    question: str | None = None,
) -> Equivalence:
    """Whether a MATH prediction equals the reference (both as extracted, not normalised).

    Args:
        prediction: the extracted answer, or None when none could be extracted.
        reference: the reference answer (e.g. `gpart.evaluation.answers.math_reference`).
        timeout: seconds each sympy check may take (one per tuple element at most).
        worker: the sympy worker to use; the process-wide `default_worker` by default.
        use_sympy: False stops after the string/number/tuple checks.
        places: the decimal places the problem asks the answer rounded to, when given
            without the problem (it then counts as a problem that asks for rounding).
        question: the problem: whether it asks for a rounded or decimal answer, and to
            how many places (`gpart.evaluation.answers.asked_rounding`). None: not known,
            so a decimal reference is taken as rounded and an exact one as exact.

    Returns:
        An `Equivalence`; ``timed_out`` when a sympy check ran out of time.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    if prediction is None:
        return Equivalence(False)
    a, b = normalize_math(prediction), normalize_math(reference)
    if _is_equation(a) != _is_equation(b):  # `y = 2x + 3` against `2x + 3 = y`
        kept_a = normalize_math(prediction, drop_lhs=False)
        kept_b = normalize_math(reference, drop_lhs=False)
        if _is_equation(kept_a) and _is_equation(kept_b):
            a, b = kept_a, kept_b
    rounding = asked_rounding(question)
    if places is not None:
        rounding = replace(rounding, known=True, asked=True, places=places)
    return _equal_normalized(a, b, _Check(timeout, worker, use_sympy, rounding))
