"""GSM8K / MATH / MATH-500 accuracy by greedy generation, of a trained run or a base model.

    uv run python src/scripts/math/eval_math.py --adapter_path logs/<run>/metamathqa/seed_0 \
        --dataset gsm8k math
    uv run python src/scripts/math/eval_math.py --model_path /models/qwen2.5-0.5b \
        --dataset gsm8k --data_file gsm8k_test.jsonl --output_dir logs/base --max_samples 100
    uv run python src/scripts/math/eval_math.py --rescore logs/<run>/.../eval/gsm8k/predictions.jsonl
    accelerate launch src/scripts/math/eval_math.py --adapter_path ...   # one shard per GPU

Writes <run>/eval/<dataset>/predictions.jsonl and results.json (an interrupted run resumes
from eval/<dataset>/partial/ when re-run as it was); everything happens in
`gpart.runners.math_eval`, and `--help` lists the flags.
"""

import sys

from gpart.runners.math_eval import main

if __name__ == "__main__":
    sys.exit(main())
