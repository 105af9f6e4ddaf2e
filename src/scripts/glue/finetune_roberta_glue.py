"""Fine-tune RoBERTa on GLUE with GPart or a baseline.

    uv run python src/scripts/glue/finetune_roberta_glue.py --adapter_type gpart
    uv run python src/scripts/glue/finetune_roberta_glue.py --adapter_type lora \
        --tasks rte mrpc --seed 0 1 2 --base_model /models/roberta-base --data_dir /data/glue \
        training.lr 4e-4 task.rte.epochs 40

Everything happens in `gpart.runners.glue`; `--help` lists the flags and override keys.
"""

import sys

from gpart.runners.glue import main

if __name__ == "__main__":
    sys.exit(main())
