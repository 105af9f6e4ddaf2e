"""Re-evaluate saved image-classification runs (best or last model, any split) without
touching results.json.

    uv run python src/scripts/vision/eval_ViT.py logs/gpart_d72000_lr0.004_1a2b3c4d
    uv run python src/scripts/vision/eval_ViT.py logs/.../cifar10/seed_0 --which last
"""

import sys

from gpart.runners.vision import eval_main

if __name__ == "__main__":
    sys.exit(eval_main())
