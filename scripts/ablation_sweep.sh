#!/usr/bin/env bash
# One task over a list of d values and GPart variants, with any runner; then the table by d
# and the metric-vs-parameters figure.
#   bash scripts/ablation_sweep.sh glue rte "4096 16384 65536" "default partition_scope=transformer_block projection_type=fastfood"
#   bash scripts/ablation_sweep.sh vision cifar100 "18000 72000" "default grouping_strategy=balanced" --seed 0 1 2
# A variant is `default` or `field=value` of the GPart adapter (adapter.<field>); flags after
# the fourth argument (--seed, --base_model, --data_dir, ...) go to the runner.
set -euo pipefail
domain="$1"; task="$2"; ds="$3"; variants="$4"; shift 4
case "$domain" in
    glue) runner=src/scripts/glue/finetune_roberta_glue.py; collect=src/scripts/glue/collect_results_glue.py ;;
    vision) runner=src/scripts/vision/finetune_ViT.py; collect=src/scripts/vision/collect_results_ViT.py ;;
    *) echo "ablation_sweep.sh: unknown domain '$domain' (glue, vision)" >&2; exit 2 ;;
esac
root="logs/ablation_${domain}_${task}"
series=()
for variant in $variants; do
    overrides=()
    if [ "$variant" != default ]; then
        overrides=("adapter.${variant%%=*}" "${variant#*=}")
    fi
    for d in $ds; do
        uv run python "$runner" --adapter_type gpart --tasks "$task" --output_dir "$root/$variant" \
            "$@" adapter.d "$d" "${overrides[@]}" || echo "some runs of $variant d=$d failed"
    done
    series+=(--series "GPart $variant" "$root/$variant")
    echo "### $variant"
    uv run python "$collect" "$root/$variant" --tasks "$task" --by d
done
uv run python -m gpart.results.plots params --task "$task" --out "$root/params" "${series[@]}"
