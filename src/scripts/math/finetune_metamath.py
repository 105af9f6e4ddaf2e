"""Fine-tune a decoder LLM on MetaMathQA with GPart or a baseline.

    uv run python src/scripts/math/finetune_metamath.py --adapter_type gpart
    uv run python src/scripts/math/finetune_metamath.py --adapter_type lora \
        --model_size llama-3.1-8b data.max_train_samples 100000 --seed 0 1 2
    uv run python src/scripts/math/finetune_metamath.py --adapter_type gpart \
        --base_model /models/qwen2.5-0.5b data.train_file /data/MetaMathQA-395K.json

Everything happens in `gpart.runners.math`; `--help` lists the flags and override keys.
"""

import sys

from gpart.runners.math import main

if __name__ == "__main__":
    sys.exit(main())
