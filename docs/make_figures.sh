#!/usr/bin/env bash
# Renders the figures of docs/results.md from a tiny local run, with the project's own
# commands: a two-layer RoBERTa and a learnable RTE written by the tests' helpers
# (tests/glue_env.py), GPart at two d and LoRA trained a few epochs on the CPU, then every
# figure command of that page. Offline, a few minutes on two cores.
#   bash docs/make_figures.sh            # writes docs/figures/*.png
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out=docs/figures

uv run python - "$work" <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from glue_env import write_glue_data, write_tiny_model

root = Path(sys.argv[1])
write_glue_data(root / "data", tasks=("rte",), n_train=128, n_val=48)
write_tiny_model(root / "roberta")
PY

# run FLAGS OVERRIDES: the runner's flags, then its key-value overrides (word-split)
run() {
    # shellcheck disable=SC2086
    uv run python src/scripts/glue/finetune_roberta_glue.py --tasks rte --seed 0 1 \
        --base_model "$work/roberta" --data_dir "$work/data" --output_dir "$work/logs" $1 \
        training.epochs 8 task.epochs 8 training.batch_size 16 training.max_seq_length 32 \
        training.num_workers 0 training.logging_steps 1 training.report_to none $2
}
run "--adapter_type gpart" "adapter.d 512 training.lr 0.05"
run "--adapter_type gpart" "adapter.d 2048 training.lr 0.05"
run "--adapter_type lora" "training.lr 0.05"

plots="uv run python -m gpart.results.plots"
$plots params "$work/logs" --task rte --out "$work/rte_params"
$plots curves "$work"/logs/gpart_*/rte/seed_0 --out "$work/rte_curves"
gpart=$(ls -d "$work"/logs/gpart_d2048_*/rte/seed_0)  # as many numbers as LoRA
lora=$(ls -d "$work"/logs/lora_*/rte/seed_0)
$plots landscape "$gpart" "$lora" --labels GPart LoRA --grid 9 --span 2 --seeds 2 \
    --max_samples all --out "$work/rte_landscape"
$plots theta "$work"/logs/gpart_*/rte --out "$work/rte_theta"
uv run python -m gpart.bench.isometry --model_config roberta-tiny --d 256 --pairs 100 \
    --out "$work/isometry"

mkdir -p "$out"
for f in rte_params rte_curves rte_landscape rte_theta isometry; do
    cp "$work/$f.png" "$out/$f.png"
done
ls -l "$out"
