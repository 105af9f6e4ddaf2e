"""Re-evaluate saved GLUE runs (best or last model, any split) without touching results.json.

uv run python src/scripts/glue/eval_roberta_glue.py logs/gpart_d23040_lr0.005_1a2b3c4d
uv run python src/scripts/glue/eval_roberta_glue.py logs/.../rte/seed_0 --which last --split train
"""

import sys

from gpart.runners.glue import eval_main as main

if __name__ == "__main__":
    sys.exit(main())
