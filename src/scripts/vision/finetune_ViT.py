"""Fine-tune a ViT (or any image backbone) on image classification with GPart or a baseline.

    uv run python src/scripts/vision/finetune_ViT.py --adapter_type gpart --tasks cifar100
    uv run python src/scripts/vision/finetune_ViT.py --adapter_type lora --model_size large \
        --tasks flowers102 dtd --seed 0 1 2 --base_model /models/vit-large --data_dir /data/vtab

Everything happens in `gpart.runners.vision`; `--help` lists the flags and override keys.
"""

import sys

from gpart.runners.vision import main

if __name__ == "__main__":
    sys.exit(main())
