"""The sympy worker never hangs an evaluation: a slow check times out, the worker restarts.

The tests here share one `SympyWorker` of their own (each start costs a few seconds:
importing sympy and warming it up), so the process-wide one other tests use is left alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from gpart.evaluation import SympyWorker, check_answer, math_equal
from gpart.evaluation.answers import Rounding
from gpart.evaluation.sympy_worker import sympy_equal

# Expanding a 6-term sum to the 15th power: ~30 s of sympy on one core, so a limit of a
# fraction of a second always runs out.
SLOW = ("(a+b+c+d+e+1)^{15}", "(a+b+c+d+e)^{15}")


@pytest.fixture(scope="module")
def worker():
    w = SympyWorker()
    yield w
    w.close()


def test_slow_check_times_out_promptly_and_the_worker_keeps_working(worker):
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}", worker=worker).equal  # started, warm
    restarts = worker.restarts
    start = time.monotonic()
    got = math_equal(*SLOW, timeout=0.3, worker=worker)
    assert time.monotonic() - start < 5
    assert (got.equal, got.timed_out, got.method) == (False, True, "timeout")
    assert worker.restarts == restarts + 1
    again = math_equal("\\sqrt{12}", "2\\sqrt{3}", worker=worker)
    assert (again.equal, again.timed_out) == (True, False)


def test_timeout_counts_in_results_and_summary(worker):
    got = check_answer(
        "math", f"\\boxed{{{SLOW[0]}}}", f"\\boxed{{{SLOW[1]}}}", timeout=0.3, worker=worker
    )
    assert (got.correct, got.timed_out, got.unextractable) == (False, True, False)


def test_checks_from_threads_share_one_worker(worker):
    got = {}

    def run(k: int) -> None:
        got[k] = worker.equal(f"\\sqrt{{{4 * k * k}}}", f"{2 * k}", timeout=30)

    restarts = worker.restarts
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {2: True, 3: True, 4: True, 5: True}
    assert worker.restarts == restarts


def test_the_worker_reads_what_the_problem_asks(worker):
    # a decimal reference: rounded when the problem is not known, exact when it asks none
    assert worker.equal("\\sqrt{2}", "1.41") is True
    plain = {"known": True, "asked": False, "places": None}
    assert worker.equal("\\sqrt{2}", "1.41", rounding=plain) is False
    # places alone, as math_equal(places=) takes them
    assert worker.equal("1.41", "\\sqrt{2}") is False
    assert worker.equal("1.41", "\\sqrt{2}", places=2) is True


def test_a_dead_worker_is_replaced(worker):
    assert worker.equal("2x", "x+x") is True
    restarts = worker.restarts
    worker._proc.kill()  # e.g. killed for memory by the OS
    worker._proc.wait()
    assert worker.equal("2x", "x+x") is True
    assert worker.restarts == restarts + 1


def test_worker_protocol_survives_bad_requests():
    proc = subprocess.run(
        [sys.executable, "-m", "gpart.evaluation.sympy_worker"],
        input='{"a": "2x", "b": "x+x"}\nnot json\n{"a": "1"}\n{"a": "1", "b": "2"}\n',
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "ready"
    replies = [json.loads(line) for line in lines[1:]]
    assert [r["equal"] for r in replies] == [True, False, False, False]
    assert replies[0]["error"] is None and replies[1]["error"].startswith("JSONDecodeError")
    assert replies[2]["error"].startswith("KeyError")
    assert proc.returncode == 0


def test_sympy_equal_in_process():
    assert sympy_equal("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}")
    # a decimal reference: the closed form rounded to its places
    assert sympy_equal("\\sqrt{2}", "1.414") and sympy_equal("\\sqrt{2}", "1.4")
    assert not sympy_equal("\\sqrt{2}", "1.415")
    assert not sympy_equal("\\sqrt{2}", "1.414", Rounding(known=True))  # asked for none
    # a decimal prediction: no exact answer, unless the problem asks for a decimal
    assert not sympy_equal("1.414", "\\sqrt{2}")
    assert sympy_equal("1.414", "\\sqrt{2}", Rounding(known=True, asked=True))
    assert sympy_equal("1.41", "\\sqrt{2}", Rounding(known=True, asked=True, places=2))
    assert not sympy_equal("x+1", "x")
    assert not sympy_equal("x < 1", "1 > x")  # inequalities: not compared
