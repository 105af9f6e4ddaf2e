"""GSM8K and MATH answer checking: extraction, normalisation, equivalence, (re-)scoring.

Light on purpose (no torch, no sympy at import): sympy runs in a worker subprocess that is
started on the first check that needs it (`gpart.evaluation.equivalence.SympyWorker`).

    from gpart.evaluation import check_answer, score_completions, rescore
    check_answer("gsm8k", "... The answer is $1,000.", "... #### 1000").correct   # True
    score_completions("math", [(completion, solution), ...]).summary["accuracy"]
    rescore("runs/.../eval/gsm8k/predictions.jsonl")   # writes *.rescored.* beside it

The rules are described in the README section "GSM8K and MATH answer checking".
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
    DATASET_RULES,
    RESCORED_PREDICTIONS,
    RESCORED_RESULTS,
    AnswerResult,
    Scores,
    check_answer,
    rescore,
    rules_for,
    score_completions,
    summarize,
)

__all__ = [
    "DATASET_RULES",
    "DEFAULT_TIMEOUT",
    "RESCORED_PREDICTIONS",
    "RESCORED_RESULTS",
    "AnswerResult",
    "Equivalence",
    "Scores",
    "SympyWorker",
    "check_answer",
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
    "rescore",
    "rules_for",
    "score_completions",
    "summarize",
]
