"""The paper's grader, reproduced: GSM8K and MATH as the GPart authors' evaluation scored them.

Rules read from the authors' code (``src/scripts/math/eval_math.py`` and
``src/utils/math_eval_utils.py`` of SamsungLabs/GPart at 320f0c1) and written again here,
leniencies included, so a number can be set beside the paper's:

* **GSM8K.** The completion is lowercased. The first of the markers ``the answer is: ``,
  ``the answer is ``, ``answer: ``, ``answer is: ``, ``answer is ``, ``final answer: ``,
  ``final answer is: ``, ``final answer is `` (in that order of preference) that occurs
  anywhere splits it, and the text after the marker's *last* occurrence is read; with no
  marker, the text after the last ``the answer`` / ``answer`` / ``final answer``, else the
  whole completion. Of that text only the first line counts (a final ``.`` or ``,``
  dropped): its first number (``[-+]?\\d*[.,/]?\\d+``: one separator at most, so
  ``1,000,000`` reads as 1000 and ``####`` means nothing); a line without one falls back
  to the completion's last number. The value is rounded to 6 decimals. It is right when
  it equals the reference, or is within relative 1e-4 of the reference, of 100x it or of
  1/100x it (``include_percentage``).
* **MATH.** The prediction is the text after the last occurrence of the first marker
  found among ``This is the answer:``, ``The answer is:``, ``Answer:``, ``The answer is``
  (case-sensitive; the whole rest of the completion, a final ``.`` dropped), else the
  content of the last ``\\boxed{...}`` (``\\fbox`` only without any ``\\boxed``). Strings
  are not normalised. Equal when: both read as floats (``float()`` after removing
  commas) and match as GSM8K numbers do; or they are the same after stripping outer
  brackets and removing every ``{ } ( )``; or both are ``[..]`` or both ``(..)`` and
  their comma-separated parts match pairwise by these rules; or the symbolic step says
  so (`official_symbolic_equal`, in the sympy worker).
* **The symbolic step as it ran.** The paper's environment pins ``latex2sympy2==1.9.1``,
  which forces the ANTLR 4.7.2 runtime, and sympy's ``parse_latex`` cannot load its 4.11
  grammar on it: every call raises, and the code moves on to sympy's ``parse_expr``
  (Python syntax). So LaTeX is never parsed, which is why ``\\frac{1}{2}`` and
  ``\\dfrac{1}{2}`` differ there. This module reproduces that: `parse_expr` only.

Where this differs from the authors' code, on purpose: the symbolic step runs in our
`~gpart.evaluation.equivalence.SympyWorker` under its time limit (theirs ran without one
by default) and counts as not equal when it runs out; and sympy is not handed text that
would let ``eval`` reach Python itself (see `gpart.evaluation.sympy_worker`). A MATH
reference given as a full solution is read by their box rule; given as the answer alone
(``predictions.jsonl``'s ``ground_truth``), as it is.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from gpart.evaluation.answers import gsm8k_reference
from gpart.evaluation.equivalence import DEFAULT_TIMEOUT, Equivalence, SympyWorker, default_worker

GSM8K_MARKERS = (
    "the answer is: ",
    "the answer is ",
    "answer: ",
    "answer is: ",
    "answer is ",
    "final answer: ",
    "final answer is: ",
    "final answer is ",
)
GSM8K_FALLBACK_MARKERS = ("the answer", "answer", "final answer")
MATH_MARKERS = ("This is the answer:", "The answer is:", "Answer:", "The answer is")
NUMBER_RE = re.compile(r"[\-+]?\d*[\.,/]?\d+")
REL_TOL = 1e-4  # math_equal's is_close
DECIMALS = 6  # extract_answer_number rounds to this


@dataclass(frozen=True)
class OfficialResult:
    """One verdict of the paper's grader: the prediction as it extracted it, and whether it
    equals the reference (``timed_out``: its symbolic step ran out of time)."""

    prediction: str | None
    correct: bool
    timed_out: bool = False


def _is_number(text: str) -> bool:
    """A float, or one character with a Unicode numeric value (``½``)."""
    try:
        float(text)
        return True
    except ValueError:
        pass
    try:
        unicodedata.numeric(text)
        return True
    except (TypeError, ValueError):
        return False


def _number_value(text: str) -> float | None:
    """The value of a `NUMBER_RE` match, rounded as the paper's extraction rounds it."""
    if "/" in text:
        num, den = text.split("/")
        if not (_is_number(num) and _is_number(den)):
            return None
        if den == "0" or float(den) == 0:
            return None
        return round(float(num) / float(den), DECIMALS)
    value = float(text.replace(",", ""))
    return None if math.isinf(value) else round(value, DECIMALS)


def official_gsm8k_prediction(completion: str) -> float | None:
    """The number the paper's GSM8K extraction reads from `completion` (module docstring)."""
    lower = completion.lower()
    tail = None
    for marker in GSM8K_MARKERS:
        if marker in lower:
            tail = lower.split(marker)[-1].strip()
            break
    if tail is None:
        tail = lower
        for marker in GSM8K_FALLBACK_MARKERS:
            if marker in lower:
                tail = lower.split(marker)[-1]
                break
        tail = tail.strip()
    if not tail:
        return None
    line = tail.split("\n")[0].strip()
    for end in (".", ","):
        if line.endswith(end):
            line = line[:-1].strip()
    match = NUMBER_RE.search(line)
    if match is not None:
        return _number_value(match.group())
    numbers = NUMBER_RE.findall(lower)
    if not numbers:
        return None
    try:
        return _number_value(numbers[-1])
    except ValueError:
        return None


def _digit(value: object) -> float | None:
    """``float(str(value))`` after removing commas, or None (the paper's ``is_digit``)."""
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def numbers_match(prediction: float, reference: float) -> bool:
    """The paper's numeric check: within relative 1e-4 of the reference, 100x or 1/100x it."""
    return any(
        math.isclose(target, prediction, rel_tol=REL_TOL)
        for target in (reference / 100, reference, reference * 100)
    )


def official_gsm8k_equal(prediction: float | None, reference: str) -> bool:
    """The paper's GSM8K verdict for an extracted `prediction` and the reference number."""
    if prediction is None:
        return False
    return float(prediction) == float(reference) or numbers_match(prediction, float(reference))


def _last_boxed(text: str) -> str | None:
    """The paper's box reading: from the last ``\\boxed`` (``\\fbox`` only when there is no
    ``\\boxed``) to the brace that closes the first brace after it; the content when that
    span starts with ``\\boxed{`` and ends with ``}``, else None."""
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                span = text[start : i + 1]
                head = "\\boxed{"
                return span[len(head) : -1] if span.startswith(head) else None
    return None


def official_math_prediction(completion: str) -> str | None:
    """The answer the paper's MATH extraction reads from `completion` (module docstring)."""
    for marker in MATH_MARKERS:
        if marker in completion:
            answer = completion.split(marker)[-1].strip()
            return answer[:-1].strip() if answer.endswith(".") else answer
    return _last_boxed(completion)


def official_math_reference(ground_truth: str) -> str | None:
    """A full solution's answer by the paper's box rule; an answer without a box as it is."""
    text = str(ground_truth)
    return _last_boxed(text) if "\\boxed" in text or "\\fbox" in text else text


def _strip_brackets(prediction: str, reference: str) -> tuple[str, str]:
    if (
        prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("(")
    ) or (
        prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("[")
    ):
        prediction, reference = prediction.strip("[]()"), reference.strip("[]()")
    for ch in "{}()":
        prediction, reference = prediction.replace(ch, ""), reference.replace(ch, "")
    return prediction, reference


def official_math_equal(
    prediction: str | None,
    reference: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
) -> Equivalence:
    """The paper's ``math_equal`` (include_percentage and is_close on, as it ran).

    Args:
        prediction: the extracted answer (`official_math_prediction`), or None.
        reference: the reference answer (`official_math_reference`).
        timeout: seconds the symbolic step may take in the worker.
        worker: the sympy worker; the process-wide one by default.
    """
    if prediction is None:
        return Equivalence(False)
    a, b = _digit(prediction), _digit(reference)
    if a is not None and b is not None:
        return Equivalence(numbers_match(a, b), method="number")
    if not prediction:
        return Equivalence(False)
    pred, ref = str(prediction).strip(), str(reference).strip()
    stripped = _strip_brackets(pred, ref)
    if stripped[0] == stripped[1]:
        return Equivalence(True, method="string")
    timed_out = False
    both = [(o, c) for o, c in (("[", "]"), ("(", ")"))
            if pred.startswith(o) and pred.endswith(c) and ref.startswith(o) and ref.endswith(c)]  # fmt: skip
    if both:
        parts_a, parts_b = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(parts_a) == len(parts_b):
            verdicts = [
                official_math_equal(x, y, timeout=timeout, worker=worker)
                for x, y in zip(parts_a, parts_b, strict=True)
            ]
            timed_out = any(v.timed_out for v in verdicts)
            if all(v.equal for v in verdicts):
                return Equivalence(True, method="tuple")
    worker = worker if worker is not None else default_worker()
    got = worker.equal(pred, ref, timeout=timeout, rule="official")
    if got is None:
        return Equivalence(False, timed_out=True, method="timeout")
    return Equivalence(got, timed_out=timed_out, method="sympy" if got else "none")


def official_check(
    rules: str,
    completion: str,
    ground_truth: str | int | float,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    worker: SympyWorker | None = None,
) -> OfficialResult:
    """The paper's verdict on one completion under `rules` (``gsm8k`` or ``math``).

    Raises:
        ValueError: a GSM8K reference without a number.
    """
    if rules == "gsm8k":
        reference = gsm8k_reference(ground_truth)
        predicted = official_gsm8k_prediction(completion)
        return OfficialResult(
            None if predicted is None else repr(predicted),
            official_gsm8k_equal(predicted, reference),
        )
    predicted = official_math_prediction(completion)
    got = official_math_equal(
        predicted, official_math_reference(str(ground_truth)), timeout=timeout, worker=worker
    )
    return OfficialResult(predicted, got.equal, got.timed_out)
