"""GSM8K / MATH / MATH-500 accuracy by greedy generation, of a trained run or a base model.

    uv run python src/scripts/math/eval_math.py --adapter_path logs/<run>/metamathqa/seed_0 \
        --dataset gsm8k math
    uv run python src/scripts/math/eval_math.py --base_model /models/qwen2.5-0.5b \
        --dataset gsm8k --output_dir logs/base data_file.gsm8k gsm8k_test.jsonl max_samples 100
    uv run python src/scripts/math/eval_math.py --rescore logs/<run>/.../eval/gsm8k/predictions.jsonl
    accelerate launch src/scripts/math/eval_math.py --adapter_path ...   # one shard per GPU

Writes <run>/eval/<dataset>/predictions.jsonl and results.json (an interrupted run resumes
from eval/<dataset>/partial/ when re-run as it was); everything happens in
`gpart.runners.math_eval`. `--help` lists the flags and override keys, `--print_config`
what each dataset will be evaluated with.
"""

import sys

from gpart.runners.math_eval import main

if __name__ == "__main__":
    sys.exit(main())
