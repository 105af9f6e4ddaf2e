#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one command, offline (no hub): the CUDA tests (CUDA
# graphs of a compiled GPart model among them), the bf16 benchmark rows (compiled too), the
# math runner's qwen2.5-0.5b preset (GPart and LoRA) and one FSDP run through `accelerate
# launch` on a stand-in model of Qwen2.5-0.5B's shape (benchmarks/stand_in_decoder.py:
# random weights, so only speed and memory mean anything), generation throughput of
# eval_math.py, and the fast test suite with a GPU present.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Each step writes OUT_DIR/<step>.log and one line of OUT_DIR/summary.txt (exit status and
# seconds); a failing step does not stop the next. The steps run in order of importance
# inside a time budget (GPU_CHECK_BUDGET seconds, default 540): a step gets at most what is
# left, and is skipped under 20 s. PYTHON picks the interpreter (default `uv run python`);
# GPU_CHECK_PACK=FILE.tar.gz packs OUT_DIR after every step (for a machine that may be
# taken back before the end). docs/performance.md ("On a GPU") holds the last results.
set -u
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-uv run python}
BUDGET=${GPU_CHECK_BUDGET:-540}
WORK=${GPU_CHECK_WORK:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export GPART_CACHE_DIR=$WORK/cache
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

step() { # step NAME MAX_SECONDS COMMAND...
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    local left=$((BUDGET - SECONDS - 5))
    ((left < limit)) && limit=$left
    if ((limit < 20)); then
        echo "$name: skipped (budget spent)" | tee -a "$SUMMARY"
        return 0
    fi
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: rc=$rc $((SECONDS - t0))s" | tee -a "$SUMMARY"
    ((rc != 0)) && tail -n 5 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$SUMMARY"
    if [ -n "${GPU_CHECK_PACK:-}" ]; then tar czf "$GPU_CHECK_PACK" -C "$OUT" .; fi
    return 0
}

# The math runner on the stand-in (the caller adds the adapter and its flags).
# GPU_CHECK_STANDIN / GPU_CHECK_OVERRIDES (every run) / GPU_CHECK_GPART_OVERRIDES (the GPart
# runs) exist for a dry run of this script on a CPU, e.g. GPU_CHECK_STANDIN=qwen2-tiny
# GPU_CHECK_OVERRIDES="training.precision fp32" GPU_CHECK_GPART_OVERRIDES="adapter.d 1024"
# (there the fsdp step stops at once with its no-GPU message, by design).
STANDIN=${GPU_CHECK_STANDIN:-qwen2-0.5b}
# shellcheck disable=SC2206 # word splitting wanted: PYTHON and the overrides are lists
RUN=(src/scripts/math/finetune_metamath.py --model_size qwen2.5-0.5b
    --base_model "$WORK/standin/model")
OVR=(data.train_file "$WORK/standin/train.jsonl" data.heldout_samples 64
    training.save_total_limit 1 ${GPU_CHECK_OVERRIDES:-})
# shellcheck disable=SC2206
GPART=(--adapter_type gpart "${OVR[@]}" ${GPU_CHECK_GPART_OVERRIDES:-})

run_of() { # run_of DIR PATTERN: the first run directory under DIR matching *PATTERN*
    find "$1" -path "*$2*" -name results.json -printf '%h\n' 2>/dev/null | head -n 1
}

copy_results() { # copy_results RUN_DIR NAME: a results.json as OUT_DIR/NAME.json
    if [ -f "$1/results.json" ]; then cp "$1/results.json" "$OUT/$2.json"; else
        echo "$2: no results.json" >>"$SUMMARY"
    fi
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import sys, torch, transformers, peft, accelerate, datasets
print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'transformers', transformers.__version__, 'peft', peft.__version__,
      'accelerate', accelerate.__version__, 'datasets', datasets.__version__)"
} 2>&1 | tee "$OUT/env.log" | tee -a "$SUMMARY"

# 1. The tests marked cuda (the no-sync step, fused vs eager on the device).
step cuda_tests 150 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_fused.py \
    tests/test_bench.py

# 1b. The whole model compiled with mode="reduce-overhead": GPart's steps captured as CUDA
#     graphs (no skip, no sync in a replay, fresh dropout masks per replay).
step cuda_graphs 150 $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_compile.py

# 2. A Qwen2.5-0.5B-shaped stand-in; on it first fsdp.yaml through accelerate launch (its
#    fp32-loading fix was never run on a GPU: the most important check left), then the
#    math runner's end-to-end tests with a GPU present.
step standin 120 $PY benchmarks/stand_in_decoder.py --model_config "$STANDIN" \
    --out "$WORK/standin" --rows 2000
# fsdp.yaml through accelerate launch (one process: the FSDP code paths, not the sharding).
step train_fsdp 120 $PY -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml \
    --num_processes 1 "${RUN[@]}" --output_dir "$WORK/runs_fsdp" "${GPART[@]}" \
    training.max_steps 10
copy_results "$(run_of "$WORK/runs_fsdp" gpart)" results_fsdp

step runner_tests 120 $PY -m pytest -q -p no:cacheprovider tests/test_math_runner.py \
    -k "a_few_steps or resume"

# 3. The math presets on the stand-in: 30 optimizer steps of 4 x 4 sequences (the preset's
#    batch), bf16; tokens/s and peak memory from results.json.
step train_gpart 150 $PY "${RUN[@]}" --output_dir "$WORK/runs" "${GPART[@]}" \
    training.max_steps 30
copy_results "$(run_of "$WORK/runs" gpart)" results_gpart
step train_lora 120 $PY "${RUN[@]}" --adapter_type lora --output_dir "$WORK/runs" \
    "${OVR[@]}" training.max_steps 30
copy_results "$(run_of "$WORK/runs" lora)" results_lora

# 4. The benchmark rows of docs/performance.md in bf16. No fresh-process memory probes: on an H200 they
#    took the qwen row's whole budget; the math runs above record peak memory instead.
step bench_roberta 150 $PY -m gpart.bench --model_config roberta-base --targets both \
    --batch_size 16 --seq_len 128 --device cuda --dtype bf16 --warmup 3 --steps 10 \
    --no_memory --output "$OUT/bench_roberta-base_cuda_bf16.json"
step bench_qwen 150 $PY -m gpart.bench --model_config qwen2-0.5b --targets qkvo,all-linear \
    --batch_size 4 --seq_len 512 --device cuda --dtype bf16 --gpart_d 131072 --lora_r 4 \
    --lora_alpha 4 --warmup 3 --steps 10 --no_memory \
    --methods floor,lora,gpart-stateless-random,gpart-materialized-random \
    --output "$OUT/bench_qwen2-0.5b_cuda_bf16.json"

# 5. Generation throughput: the GPart run merged, 128 prompts in batches of 64 (a random
#    model rarely stops, so nearly every completion runs to max_new_tokens).
run=$(run_of "$WORK/runs" gpart)
[ -n "$run" ] || run="$WORK/runs/no-gpart-run" # the step then fails with one clear line
step eval_math 120 $PY src/scripts/math/eval_math.py --adapter_path "$run" \
    --dataset gsm8k data_file.gsm8k "$WORK/standin/gsm8k.jsonl" max_samples 128 \
    batch_size 64 max_new_tokens 256
copy_results "$run/eval/gsm8k" eval_gsm8k

step bench_ablations 120 $PY -m gpart.bench --model_config roberta-base --targets all-linear \
    --batch_size 16 --seq_len 128 --device cuda --dtype bf16 --warmup 3 --steps 10 \
    --no_memory --methods floor,gpart-stateless-random,gpart-stateless-balanced,gpart-materialized-random,ablations \
    --output "$OUT/bench_ablations_cuda_bf16.json"

# The same rows' models compiled whole (Trainer's torch_compile): compile_s and step times.
step bench_compiled 150 $PY -m gpart.bench --model_config roberta-base --targets all-linear \
    --batch_size 16 --seq_len 128 --device cuda --dtype bf16 --warmup 3 --steps 10 \
    --no_memory --torch_compile --methods floor,lora,gpart-stateless-random \
    --output "$OUT/bench_roberta-base_cuda_bf16_compiled.json"

# 6. The fast suite with a GPU present (code that picks the device must still pass).
xdist=""
$PY -c "import xdist" 2>/dev/null && xdist="-n 8"
step suite 300 $PY -m pytest -q -p no:cacheprovider -m "not slow" $xdist
tail -n 3 "$OUT/suite.log" >>"$SUMMARY" 2>/dev/null
echo "done in ${SECONDS}s" | tee -a "$SUMMARY"
