#!/usr/bin/env bash
# Reproduce the paper's GLUE table for one model size: GPart and the baselines the paper
# authors' code runs (docs/glue.md, "Reproducing the paper"), 5 seeds each,
# then print the table. Pass --base_model/--data_dir (offline) or other flags through "$@".
#   bash scripts/reproduce_glue_table.sh base
#   bash scripts/reproduce_glue_table.sh large --data_dir /data/glue
set -euo pipefail
size="${1:-base}"; shift || true
out="logs/glue_${size}"
for adapter in gpart unilora lora vera bitfit head full; do
    uv run python src/scripts/glue/finetune_roberta_glue.py --adapter_type "$adapter" \
        --model_size "$size" --seed 0 1 2 3 4 --output_dir "$out" "$@" || echo "some $adapter runs failed"
done
uv run python src/scripts/glue/collect_results_glue.py "$out" --latex "$out/table.tex" --csv "$out/table.csv"
