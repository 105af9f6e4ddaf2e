#!/usr/bin/env bash
# Reproduce the paper's ViT table for one backbone size: GPart and the baselines on the nine
# datasets, 5 seeds each, then print the table. Pass --base_model/--data_dir (offline) or
# other flags through "$@".
#   bash scripts/reproduce_vit_table.sh base
#   bash scripts/reproduce_vit_table.sh large --data_dir /data/vision
set -euo pipefail
size="${1:-base}"; shift || true
out="logs/vit_${size}"
for adapter in gpart unilora lora fourierft head full; do
    uv run python src/scripts/vision/finetune_ViT.py --adapter_type "$adapter" \
        --model_size "$size" --seed 0 1 2 3 4 --output_dir "$out" "$@" || echo "some $adapter runs failed"
done
uv run python src/scripts/vision/collect_results_ViT.py "$out" --model_size "$size" \
    --latex "$out/table.tex" --csv "$out/table.csv"
