"""GSM8K and MATH answer checking: extraction, normalisation, equivalence, (re-)scoring.

Light on purpose (no torch, no sympy at import): sympy runs in a worker subprocess that is
started on the first check that needs it (`gpart.evaluation.equivalence.SympyWorker`).

    from gpart.evaluation import check_answer, score_completions, rescore
    check_answer("gsm8k", "... The answer is $1,000.", "... #### 1000").correct   # True
    score_completions("math", [(completion, solution), ...]).summary["accuracy"]
    rescore("runs/.../eval/gsm8k/predictions.jsonl")   # writes *.rescored.* beside it
    score_completions("math", pairs, graders=["gpart", "official"]).summary["graders"]

The rules are described in docs/evaluation.md ("Answer checking and grading rules").
"""

from gpart.evaluation.answers import (
    gsm8k_equal,
    gsm8k_prediction,
    gsm8k_reference,
    harness_exact_match,
    harness_flexible_extract,
    harness_strict_extract,
    last_boxed,
    math_prediction,
    math_reference,
    normalize_math,
)
from gpart.evaluation.equivalence import (
    DEFAULT_TIMEOUT,
    Equivalence,
    SympyWorker,
    default_worker,
    math_equal,
)
from gpart.evaluation.scoring import (
    DEFAULT_GRADERS,
    GRADERS,
    RESCORED_PREDICTIONS,
    RESCORED_RESULTS,
    AnswerResult,
    Scores,
    check_answer,
    check_graders,
    reference_of,
    rescore,
    rules_for,
    score_completions,
    summarize,
    summarize_graders,
)

__all__ = [
    "DEFAULT_GRADERS",
    "GRADERS",
    "DEFAULT_TIMEOUT",
    "RESCORED_PREDICTIONS",
    "RESCORED_RESULTS",
    "AnswerResult",
    "Equivalence",
    "Scores",
    "SympyWorker",
    "check_answer",
    "check_graders",
    "default_worker",
    "gsm8k_equal",
    "gsm8k_prediction",
    "gsm8k_reference",
    "harness_exact_match",
    "harness_flexible_extract",
    "harness_strict_extract",
    "last_boxed",
    "math_equal",
    "math_prediction",
    "math_reference",
    "normalize_math",
    "reference_of",
    "rescore",
    "rules_for",
    "score_completions",
    "summarize",
    "summarize_graders",
]
