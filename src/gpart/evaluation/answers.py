"""Answer extraction and normalisation for GSM8K and MATH (no sympy, no model: pure text).

GSM8K (Cobbe et al., 2021): a reference solution ends with ``#### <number>``; a completion's
answer is the number after its last answer marker, else its last number. Beside our rule,
lm-evaluation-harness's two filters of its ``gsm8k`` task (``strict-match`` and
``flexible-extract``, ``lm_eval/tasks/gsm8k/gsm8k.yaml``) are reimplemented from their
documented regexes, so accuracies compare across papers.

MATH (Hendrycks et al., 2021): the answer is the last ``\\boxed{...}``; strings are
normalised as the MATH reference's ``strip_string`` (``math_equivalence.py``) does, with a few
extensions listed in `normalize_math`. Deciding equality (numbers, tuples, sympy) is
`gpart.evaluation.equivalence`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# ------------------------------------------------------------------------------- GSM8K
# A number as people and models write it: sign, `$`, thousands commas, decimals, `a/b`,
# `\frac{a}{b}`. A minus counts as a sign only where it cannot be a binary minus (`5-3`).
_SIGN = r"(?:(?<![\w).])(?P<sign>[-−]))?"
_NUMBER_RE = re.compile(
    _SIGN
    + r"""\s*\\?\$?\s*(?:
        \\[dt]?frac\{\s*(?P<fnum>\d+(?:\.\d+)?)\s*\}\{\s*(?P<fden>\d+(?:\.\d+)?)\s*\}
      | (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
        (?:\s*/\s*(?P<den>\d+(?:\.\d+)?)(?![\d/]))?
    )""",
    re.VERBOSE,
)
# Where a completion states its answer; the last one wins (`\boxed{}` is found separately).
GSM8K_MARKERS = re.compile(r"answer\s+is|answer\s*:|####", re.IGNORECASE)


def _number_text(match: re.Match[str]) -> str:
    """The canonical text of a `_NUMBER_RE` match: ``-1000``, ``18.00``, ``3/4``."""
    sign = "-" if match.group("sign") else ""
    if match.group("fnum") is not None:
        return f"{sign}{match.group('fnum')}/{match.group('fden')}"
    text = sign + match.group("num").replace(",", "")
    if match.group("den") is not None:
        text += "/" + match.group("den")
    return text


def parse_number(text: str) -> Fraction | None:
    """The exact value of a canonical number text (``-1000``, ``18.00``, ``3/4``), or None."""
    try:
        if "/" in text:
            num, den = text.split("/")
            return Fraction(num) / Fraction(den)
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def first_number(text: str) -> str | None:
    """The first number in `text` (canonical text), or None."""
    match = _NUMBER_RE.search(text)
    return _number_text(match) if match else None


def last_number(text: str) -> str | None:
    """The last number in `text` (canonical text), or None."""
    matches = list(_NUMBER_RE.finditer(text))
    return _number_text(matches[-1]) if matches else None


def gsm8k_reference(answer: str | int | float) -> str:
    """The reference number of a GSM8K answer: the text after ``####``, commas removed.

    A bare number (a ground truth stored without its solution) is accepted as is.

    Raises:
        ValueError: no number after ``####`` (or, without ``####``, not a number).
    """
    text = str(answer)
    tail = text.rsplit("####", 1)[-1].strip()
    match = _NUMBER_RE.fullmatch(tail.rstrip("."))
    if match is None:
        where = "after '####'" if "####" in text else "(no '####' either)"
        raise ValueError(f"GSM8K reference has no number {where}: {text[-80:]!r}")
    return _number_text(match)


def gsm8k_prediction(completion: str) -> str | None:
    """A completion's answer: the number after its last answer marker, else its last number.

    Markers are ``The answer is``, ``answer:``, ``####`` (case-insensitive) and
    ``\\boxed{}``, whichever comes last. A marker followed by no number falls back to the
    last number of the completion. Returns the canonical number text, or None.
    """
    spans = [(m.start(), completion[m.end() :]) for m in GSM8K_MARKERS.finditer(completion)]
    box = _last_box(completion)
    if box is not None:
        spans.append((box[0], box[1]))
    if spans:
        found = first_number(max(spans, key=lambda span: span[0])[1])
        if found is not None:
            return found
    return last_number(completion)


def gsm8k_equal(prediction: str | None, reference: str) -> bool:
    """Numerically equal (exactly: ``18.00`` == ``18``, ``1/2`` == ``0.5``)."""
    if prediction is None:
        return False
    a, b = parse_number(prediction), parse_number(reference)
    return a is not None and b is not None and a == b


# lm-evaluation-harness, lm_eval/tasks/gsm8k/gsm8k.yaml (version 3): the two filters, the
# value a filter yields when its regex finds nothing, and exact_match's normalisation
# (`regexes_to_ignore` removed from both sides, then `ignore_case`).
HARNESS_STRICT_REGEX = r"#### (\-?[0-9\.\,]+)"  # strict-match: first match
HARNESS_FLEXIBLE_REGEX = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"  # flexible-extract: last match
HARNESS_FALLBACK = "[invalid]"
HARNESS_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")


def _harness_filter(completion: str, pattern: str, group_select: int) -> str:
    """The harness's ``regex`` filter: the `group_select`-th match of ``findall``; from a
    match of several groups, the first non-empty one; stripped."""
    matches = re.findall(pattern, completion)
    if not matches:
        return HARNESS_FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next(m for m in match if m)
    return match.strip()


def harness_strict_extract(completion: str) -> str:
    """lm-evaluation-harness ``strict-match``: the first ``#### <number>``."""
    return _harness_filter(completion, HARNESS_STRICT_REGEX, 0)


def harness_flexible_extract(completion: str) -> str:
    """lm-evaluation-harness ``flexible-extract``: the last number-like run."""
    return _harness_filter(completion, HARNESS_FLEXIBLE_REGEX, -1)


def harness_normalize(text: str) -> str:
    """exact_match's normalisation in the harness's gsm8k task (string, not numeric)."""
    for pattern in HARNESS_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def harness_exact_match(prediction: str, ground_truth: str | int | float) -> bool:
    """The harness's exact_match of a filtered prediction against the full reference."""
    return harness_normalize(prediction) == harness_normalize(str(ground_truth))


# -------------------------------------------------------------------------------- MATH
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# A stated answer without a box: "The final answer is $5$.", "Answer: 5".
MATH_MARKERS = re.compile(r"answer\s+is\s*:?|answer\s*:", re.IGNORECASE)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start] == "{"`` and the index after
    it, or None when it never closes (a truncated completion)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def _last_box(text: str) -> tuple[int, str] | None:
    """(position, content) of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (nested
    braces included) or ``\\boxed 5`` (up to ``$`` or the line's end, as the MATH
    reference's ``last_boxed_only_string`` reads it). An unclosed last box is skipped."""
    for match in reversed(list(_BOX_RE.finditer(text))):
        rest = match.end()
        if text.startswith("{", rest):
            group = _braced(text, rest)
            if group is not None:
                return match.start(), group[0]
        elif text[rest : rest + 1].isspace():
            content = re.split(r"[$\n]", text[rest:].lstrip(" \t"), maxsplit=1)[0].strip()
            if content:
                return match.start(), content
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{}`` / ``\\fbox{}`` in `text`, or None."""
    box = _last_box(text)
    return None if box is None else box[1]


def math_reference(solution: str) -> str:
    """The reference answer of a MATH solution: its last box; a solution without a box is
    taken as the bare answer (MATH-500's ``answer`` field).

    Raises:
        ValueError: an empty solution.
    """
    boxed = last_boxed(solution)
    answer = boxed if boxed is not None else solution.strip()
    if not answer.strip():
        raise ValueError(f"MATH reference has no answer: {solution[-80:]!r}")
    return answer


def math_prediction(completion: str) -> str | None:
    """A completion's answer: its last boxed expression, else the text after its last answer
    marker (up to the line's or sentence's end; the first ``$...$`` in it if any), else None.
    """
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    markers = list(MATH_MARKERS.finditer(completion))
    if not markers:
        return None
    tail = completion[markers[-1].end() :].strip().split("\n", 1)[0]
    math_span = re.search(r"\$+([^$]+)\$+", tail)
    if math_span:
        tail = math_span.group(1)
    else:
        tail = re.split(r"\.(?:\s|$)", tail, maxsplit=1)[0]  # "5. I hope it is correct."
    tail = tail.strip().strip("$").strip()
    return tail or None


def _read_arg(text: str, i: int) -> tuple[str, int] | None:
    """One TeX argument at `i`: a brace group's content, a control word, or one character."""
    if i >= len(text):
        return None
    if text[i] == "{":
        return _braced(text, i)
    if text[i] == "\\":
        word = re.match(r"\\[A-Za-z]+|\\.", text[i:])
        return (word.group(0), i + word.end()) if word else None
    return text[i], i + 1


def _brace_args(text: str, command: str, count: int) -> str:
    """Give every argument of `command` braces: ``\\frac12`` -> ``\\frac{1}{2}``,
    ``\\sqrt3`` -> ``\\sqrt{3}`` (the reference's ``_fix_fracs`` / ``_fix_sqrt``, which
    read one character per argument; this also reads ``\\frac\\pi2`` and ``\\frac{1}2``).
    ``\\sqrt[3]{x}`` is left alone."""
    out, i = [], 0
    pattern = re.compile(re.escape(command) + r"(?![A-Za-z])")
    while (match := pattern.search(text, i)) is not None:
        out.append(text[i : match.end()])
        j, args = match.end(), []
        if text.startswith("[", j):  # an optional argument: leave as written
            i = j
            continue
        for _ in range(count):
            arg = _read_arg(text, j)
            if arg is None:
                break
            args.append(arg[0])
            j = arg[1]
        if len(args) < count:  # malformed: keep the rest as written
            i = match.end()
            continue
        out.append("".join("{" + a + "}" for a in args))
        i = j
    out.append(text[i:])
    return "".join(out)


_TEXT_CMD = r"\\(?:text|textbf|textit|mbox|mathrm|mathbf)"
_UNITS_RE = re.compile(
    r"^(?P<value>.*[\d}])\s*" + _TEXT_CMD + r"\{\s*[A-Za-z][A-Za-z\s.]*\}(?:\^\{?\d\}?)?$"
)
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SHORT_LHS_RE = re.compile(r"[A-Za-z]\w?|\\[A-Za-z]+")
_INT_SLASH_RE = re.compile(r"(-?\d+)/(\d+)")
# `x \in [1, 2]`: the short left side of a membership, as of an equation
_MEMBER_RE = re.compile(r"\s*(?:[A-Za-z]\w?|\\[A-Za-z]+)\s*\\in(?![A-Za-z])\s*(?P<set>.+)")
_ONE_CHAR_SCRIPT_RE = re.compile(r"([_^])\{(\w)\}")
# `3 \text{ and } 4`, `3 and 4`, `1, 2, and 3`: a list joined by a word, read as `3, 4`
# (a whole word only: `\land`, `band` stay)
_AND_RE = re.compile(r"\s*,?\s*(?:" + _TEXT_CMD + r"\{\s*,?\s*and\s*\}|\band\b)\s*")


def normalize_math(answer: str, *, drop_lhs: bool = True) -> str:
    """Normalise a MATH answer string as the MATH reference's ``strip_string`` does.

    In order: drop newlines, ``\\!``, ``\\left``/``\\right``, degrees (``^\\circ``), ``\\$``,
    a trailing unit (``\\text{ units}``), ``\\%``; ``dfrac``/``tfrac`` -> ``frac``; add a
    leading zero (``.5`` -> ``0.5``); drop a short left-hand side (``x = 4`` -> ``4``);
    remove spaces; brace ``\\sqrt3`` and ``\\frac12``; ``0.5`` -> ``\\frac{1}{2}``; ``a/b``
    -> ``\\frac{a}{b}`` for integers.

    Extensions (answers models write that MATH solutions do not): a bare ``$`` or ``%``,
    ``°``, thin spaces (``\\,``, ``\\;``, ``\\:``), ``\\displaystyle``, a trailing period,
    ``\\text{...}`` unwrapped, a list joined by ``and`` read as one joined by commas,
    thousands separators (``1,000`` and ``1{,}000``), the unit rule also for
    ``10\\text{cm}`` (no space), a short left-hand side of ``\\in`` (``x \\in [1,2]`` ->
    ``[1,2]``), and one-character scripts unbraced (``52_{8}`` -> ``52_8``).

    Unlike the reference, which cuts everything from the first ``\\text{ `` (it only ever
    introduced units there), only a *trailing* unit goes: ``3 \\text{ and } 4`` keeps its
    4, and reads as the list ``3,4``, as ``3 and 4`` and ``3, \\text{and } 4`` do.

    Args:
        answer: the extracted answer.
        drop_lhs: drop a short left-hand side (``y = 2x`` -> ``2x``); `math_equal` turns it
            off to compare an equation with an equation (``y = 2x`` and ``2x = y``).
    """
    s = answer.replace("\n", "").strip()
    for junk in (r"\!", r"\,", r"\;", r"\:", r"\displaystyle", r"\left", r"\right"):
        s = s.replace(junk, "")
    s = s.replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    for degree in ("^{\\circ}", "^\\circ", "°"):
        s = s.replace(degree, "")
    s = s.replace("\\$", "").replace("$", "")
    s = _UNITS_RE.sub(r"\g<value>", s.strip().rstrip(".").strip())
    s = _AND_RE.sub(",", s)
    s = re.sub(_TEXT_CMD + r"\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("{,}", ",")
    s = s.strip().rstrip(".").strip()
    s = s.replace(" .", " 0.").replace("{.", "{0.").replace("-.", "-0.")
    if s.startswith("."):
        s = "0" + s
    if drop_lhs and s.count("=") == 1:
        lhs, rhs = s.split("=")
        if _SHORT_LHS_RE.fullmatch(lhs.strip()):
            s = rhs
    member = _MEMBER_RE.fullmatch(s)
    if drop_lhs and member:
        s = member.group("set")
    # spaces go, except one that ends a control word before a letter (`\pi r`)
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", "\\1\x00", s)
    s = re.sub(r"\s+", "", s).replace("\x00", " ")
    s = _ONE_CHAR_SCRIPT_RE.sub(r"\1\2", s)
    s = _brace_args(s, "\\sqrt", 1)
    s = _brace_args(s, "\\frac", 2)
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if s == "0.5":
        s = "\\frac{1}{2}"
    slash = _INT_SLASH_RE.fullmatch(s)
    if slash:
        s = f"\\frac{{{slash.group(1)}}}{{{slash.group(2)}}}"
    return s


_DECIMAL = r"-?(?:\d+(?:\.\d+)?|\.\d+)"
_MATH_NUMBER_RE = re.compile(
    rf"(?P<neg>-)?\\frac\{{(?P<num>{_DECIMAL})\}}\{{(?P<den>{_DECIMAL})\}}|(?P<plain>{_DECIMAL})"
)
# A decimal this short is a rough figure, not an answer (`0.3` for 1/3): see `numbers_equal`.
MIN_SIGNIFICANT_DIGITS = 3


@dataclass(frozen=True)
class MathNumber:
    """A number as an answer wrote it: its exact value and, for a decimal (``0.333``), how
    many places and significant digits it was given with (None and 0 for an integer or a
    fraction, which are exact)."""

    value: Fraction
    places: int | None = None
    significant: int = 0


def decimal_form(text: str) -> tuple[int, int] | None:
    """(places, significant digits) of a plain decimal literal (``-0.0350`` -> (4, 3)), or
    None for anything else (an integer included)."""
    match = re.fullmatch(r"-?(\d*)\.(\d+)", text)
    if match is None:
        return None
    digits = (match.group(1) + match.group(2)).lstrip("0")
    return len(match.group(2)), len(digits)


def math_number_form(normalized: str) -> MathNumber | None:
    """A normalised answer that is a plain number or a numeric fraction (``-3``, ``0.25``,
    ``\\frac{1}{2}``, ``-\\frac{3}{4}``) as a `MathNumber`, else None."""
    match = _MATH_NUMBER_RE.fullmatch(normalized)
    if match is None:
        return None
    plain = match.group("plain")
    if plain is not None:
        form = decimal_form(plain)
        places, significant = form if form else (None, 0)
        return MathNumber(Fraction(plain), places, significant)
    den = Fraction(match.group("den"))
    if den == 0:
        return None
    value = Fraction(match.group("num")) / den
    return MathNumber(-value if match.group("neg") else value)


def math_number(normalized: str) -> Fraction | None:
    """The exact value of a normalised answer that is a plain number or a numeric fraction
    (``-3``, ``0.25``, ``\\frac{1}{2}``, ``-\\frac{3}{4}``), else None."""
    form = math_number_form(normalized)
    return None if form is None else form.value


def terminates(value: Fraction) -> bool:
    """Whether `value` has a finite decimal expansion (its denominator is 2^i 5^j)."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    return den == 1


def round_half_up(value: Fraction, places: int) -> Fraction:
    """`value` rounded to `places` decimals, halves away from zero (as people round)."""
    scale = 10**places
    magnitude = (abs(value) * scale + Fraction(1, 2)).__floor__()
    return Fraction(magnitude if value >= 0 else -magnitude, scale)


def decimal_stands_for(decimal: Fraction, places: int, value: Fraction) -> bool:
    """Whether a decimal given with `places` places is `value` rounded (half up) or
    truncated there: ``0.6667`` and ``0.6666`` stand for 2/3, ``0.6668`` does not."""
    scale = 10**places
    truncated = Fraction(int(value * scale), scale)  # int() truncates toward zero
    return decimal in (round_half_up(value, places), truncated)


@dataclass(frozen=True)
class Rounding:
    """What a problem says about rounding its answer (`asked_rounding` reads it).

    Attributes:
        known: the problem's text was given. Without it, a decimal reference speaks for the
            problem (MATH gives a decimal reference where a decimal was asked for), an exact
            one does not.
        asked: it asks for a rounded or decimal answer ("to the nearest tenth", "as a
            decimal", "rounded to", "to 2 decimal places").
        places: the decimal places it asks for, when it names one precision.
    """

    known: bool = False
    asked: bool = False
    places: int | None = None

    @property
    def reference_rounded(self) -> bool:
        """Whether a decimal reference is a rounded figure (compared at its own precision)
        rather than an exact value: when the problem asks for rounding or is not known."""
        return self.asked or not self.known


def numbers_equal(
    prediction: MathNumber, reference: MathNumber, rounding: Rounding | None = None
) -> bool:
    """Whether a numeric prediction equals the reference; no tolerance on exact answers.

    The rules, first match wins (`rounding`: what the problem asks, `asked_rounding`;
    None: the problem is not known):

    1. equal values are equal (``18.00`` = ``18``, ``0.5`` = ``\\frac{1}{2}``);
    2. the problem asks for k places: both rounded (half up) to k places (``3.14`` =
       ``3.1`` "to the nearest tenth");
    3. a decimal reference with k places, when the problem asks for rounding or is not
       known: the prediction rounded to k places is the reference (``1.414`` = ``1.41``,
       ``1.4`` ≠ ``1.41``); when the problem is known and asks for none, the decimal is
       exact and rule 1 alone applies;
    4. a decimal prediction against an exact reference without a finite decimal expansion
       (2/3), only when the problem asks for a rounded or decimal answer without naming
       the places: at the prediction's precision, rounded or truncated there
       (`decimal_stands_for`), with at least `MIN_SIGNIFICANT_DIGITS` significant digits
       (``0.667``, ``0.666`` = 2/3; ``0.67`` ≠ 2/3). Otherwise a decimal is no exact
       answer: ``0.333`` ≠ ``\\frac{1}{3}``.

    An exact reference with a finite expansion is matched exactly (``.35626`` ≠
    ``.35625``, ``13536`` ≠ ``13535``, ``2.83`` ≠ ``3``).
    """
    rounding = rounding or Rounding()
    if prediction.value == reference.value:
        return True
    if rounding.places is not None:
        return round_half_up(prediction.value, rounding.places) == round_half_up(
            reference.value, rounding.places
        )
    if reference.places is not None:
        return rounding.reference_rounded and (
            round_half_up(prediction.value, reference.places) == reference.value
        )
    return (
        rounding.asked
        and prediction.places is not None
        and prediction.significant >= MIN_SIGNIFICANT_DIGITS
        and not terminates(reference.value)
        and decimal_stands_for(prediction.value, prediction.places, reference.value)
    )


_PLACE_WORDS = {"whole number": 0, "integer": 0, "tenth": 1, "hundredth": 2,
                "thousandth": 3, "ten-thousandth": 4, "cent": 2, "dollar": 0, "percent": 0,
                "degree": 0}  # fmt: skip
_ASKED_RE = re.compile(
    r"nearest\s+(?P<word>whole\s+number|integer|ten-thousandth|tenth|hundredth|thousandth|"
    r"cent|dollar|percent|degree)s?\b|to\s+(?P<count>\d+|one|two|three|four)\s+decimal\s+places?",
    re.IGNORECASE,
)
_COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}
# A problem that asks for a rounded or decimal answer, by any of its usual phrasings.
# Words that also mean something else count only in the phrase that asks: "nearest" as
# "to the nearest" (not "the point nearest to"), "round" as a verb before what it rounds
# (not "a round table", "each round"), "decimal" as "as a decimal", "decimal places" (not
# "the repeating decimal 0.\overline{3} as a common fraction", which asks for an exact one).
ROUNDING_CUE_RE = re.compile(
    r"\bto\s+the\s+nearest\b"
    r"|\bround(?:ed)?\s+(?:to|off|up|down|your|the|it|each|this|that)\b|\brounding\b"
    r"|\bas\s+an?\s+(?:\w+\s+)?decimal\b|\bin\s+decimal\s+(?:form|notation)\b"
    r"|\bdecimal\s+(?:places?|approximation)\b|\bsignificant\s+(?:figures|digits)\b"
    r"|\bapproximate(?:ly)?\b|\bapproximation\b",
    re.IGNORECASE,
)


def asked_places(question: str | None) -> int | None:
    """The number of decimal places a problem asks its answer rounded to ("to the nearest
    tenth": 1, "to 2 decimal places": 2, "to the nearest whole number": 0, "to the
    nearest cent": 2), or None when it asks for none or several (then the answers compare
    by `numbers_equal`'s other rules)."""
    if not question:
        return None
    found = set()
    for match in _ASKED_RE.finditer(question):
        if match.group("word"):
            found.add(_PLACE_WORDS[re.sub(r"\s+", " ", match.group("word").lower())])
        else:
            count = match.group("count").lower()
            found.add(int(count) if count.isdigit() else _COUNT_WORDS[count])
    return found.pop() if len(found) == 1 else None


def asked_rounding(question: str | None) -> Rounding:
    """What `question` says about rounding: whether it asks for a rounded or decimal answer
    (`ROUNDING_CUE_RE`) and to how many places (`asked_places`). None or an empty text:
    not known."""
    if not question or not question.strip():
        return Rounding()
    places = asked_places(question)
    asked = places is not None or ROUNDING_CUE_RE.search(question) is not None
    return Rounding(known=True, asked=asked, places=places)
