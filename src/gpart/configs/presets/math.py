"""Math presets: decoder LLMs fine-tuned on MetaMathQA (then scored on GSM8K / MATH).

Values follow the GPart paper's LLM protocol (the reference code's settings, which restate
Uni-LoRA's MetaMathQA setup); where it gives none, the comment says what was chosen and
why. Every adapter shares one training protocol; the adapter layer sets the method's own
values and the size layer the checkpoint, bf16 and activation checkpointing.
"""

from __future__ import annotations

from typing import Any

from gpart.configs.presets.base import DomainPresets, freeze

# size -> hub checkpoint (base models, not the instruct variants: MetaMathQA is the tuning).
CHECKPOINTS = {
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "gemma-7b": "google/gemma-7b",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
}
# The 7B / 8B checkpoints again with a 4-bit base (QLoRA-style; `model.quantization`):
# "<size>-nf4" -> "<size>". Sizes of their own, not a changed default: the float sizes
# are the paper's protocol, and a 4-bit run is another backbone in a results table.
QUANTIZED_SIZES = {f"{size}-nf4": size for size in CHECKPOINTS if size.endswith(("7b", "8b"))}
SIZES = (*CHECKPOINTS, *QUANTIZED_SIZES)
# Activation checkpointing from 3B up: without it a 2,048-token batch of 4 does not fit
# next to a 3B+ model's weights on one 80 GB GPU; 0.5B fits without.
_CHECKPOINTING = {"qwen2.5-0.5b": False}

# Layer 4: the checkpoint, bf16 (the reference trains in bf16; the dtype the models were
# released in) and activation checkpointing. Here, not in the adapter layer, because the
# size decides them whatever the adapter (this layer comes after the adapter's).
SIZE_PRESETS = {
    size: freeze(
        {
            "model.base_model": hub_id,
            "training.precision": "bf16",
            "training.gradient_checkpointing": _CHECKPOINTING.get(size, True),
        }
    )
    for size, hub_id in CHECKPOINTS.items()
}
# The 4-bit sizes: QLoRA's storage (Dettmers et al. 2023: NF4 codes, double quantization,
# bf16 compute, paged AdamW). NF4 and double quantization are `model.quantization nf4`
# (double quantization is always on; `gpart.runners.quantization`), bf16 compute is the
# size's training.precision bf16, which a 4-bit base computes in. Kept from the float
# size: the checkpoint, the adapter's settings (the same q/k/v/o targets and d, so a 4-bit
# run differs from its float twin by the base's storage alone) and activation
# checkpointing. Not taken: the paged optimizer. QLoRA pages AdamW's state out to CPU
# memory to survive the memory spikes of LoRA on every linear layer of a 65B model; GPart
# trains d = 524,288 numbers here, whose AdamW state is 4 MiB, so there is nothing worth
# paging, and the protocol's torch AdamW stays.
SIZE_PRESETS |= {
    size: freeze({**SIZE_PRESETS[base], "model.quantization": "nf4"})
    for size, base in QUANTIZED_SIZES.items()
}

# The protocol every method shares: the GPart authors' MetaMathQA experiment, step for step
# (SamsungLabs/GPart at 320f0c1, src/scripts/math/finetune_metamath.py, cited as fm.py:LINE;
# a plain transformers Trainer). Their values restate Uni-LoRA's setup: 2 epochs, AdamW,
# cosine schedule with 5 % warmup, weight decay 0.01, 16 examples per optimizer step,
# 2,048-token examples, the last model (a fixed budget; the score comes from generation on
# GSM8K / MATH afterwards). lr 2e-4 unless the method says otherwise. No task head: the LM
# head is pretrained (head_lr none). The keys whose alternative is this project's own
# recipe (answer-only loss on the Alpaca prompt, a held-out slice, length-grouped batches)
# are listed in docs/math.md, "Reproducing the paper".
_PROTOCOL: dict[str, Any] = {
    "training.epochs": 2,  # fm.py:269
    "training.lr": 2e-4,  # fm.py:273
    "training.head_lr": None,
    "training.scheduler": "cosine",  # fm.py:274
    "training.warmup_ratio": 0.05,  # fm.py:275
    # Trainer's own schedule (fm.py:357-365 hand both values to TrainingArguments): the
    # steps it takes, warmup ceil(T * 0.05), which "exact" computes too (its tolerance for
    # float noise never applies at 0.05: tests/test_trainer.py checks every T < 200,000)
    "training.schedule_steps": "exact",
    "training.weight_decay": 0.01,  # fm.py:276
    "training.max_grad_norm": 1.0,  # fm.py:277
    # 4 x 4: the published 0.5B run's directory name says bs4_ga4 (their README.md:381);
    # the script's own defaults are 2 x 8 (fm.py:270-271), the same 16 per step
    "training.batch_size": 4,
    "training.grad_accum": 4,
    "training.max_seq_length": 2048,  # fm.py:254; longer examples keep their end (fm.py:57-59)
    "data.length_policy": "truncate",
    "training.model_selection": "last",  # eval_strategy "no" (fm.py:375), the last model saved
    "training.logging_steps": 10,  # fm.py:280
    "training.save_total_limit": 2,  # fm.py:282
    # Every row of MetaMathQA trains (fm.py:71-75): nothing held out
    "data.heldout_samples": 0,
    # "Question: {q}\nAnswer: {a}" after BOS (and the system prompt, none by default:
    # fm.py:257), the loss on the question and answer, EOS last (fm.py:35-55)
    "data.prompt_template": "question_answer",
    "data.train_on_prompt": True,
    # Trainer's shuffled order (fm.py:379-385: no group_by_length), seeded by the run's seed
    "data.group_by_length": False,
    "training.data_order": "seeded",
    # A plain Trainer (fm.py:379-385), which re-seeds with the run's seed when built: the
    # training draws (dropout) start from set_seed(seed), not from the set-up's state.
    "training.reseed_trainer": True,
}
# The attention projections of every decoder family above (Llama, Qwen2, Gemma, Mistral).
_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
# GPart's d: 131,072 for 0.5B, the command their README gives (README.md:346-350); every
# other size the script's default 524,288 (fm.py:231; README.md:352-356 for 7B), 3B
# included: the README lists it as a base model without a command of its own.
_GPART_D = {"qwen2.5-0.5b": 131_072}
_GPART_D_LARGE = 524_288


def _adapter_presets() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for size in SIZES:
        out["gpart", size] = freeze(
            {
                **_PROTOCOL,
                "adapter.d": _GPART_D.get(size, _GPART_D_LARGE),
                "adapter.gpart_dropout": 0.05,  # fm.py:230
                "adapter.target_modules": _QKVO,  # fm.py:32
                "adapter.init_bound": 0.0,  # fm.py:232: theta starts at zero
                # the materialized assignment (fm.py:242), drawn with their GPartConfig's
                # default proj_seed 42 whatever --seed is: fm.py:197-206 never passes it
                "adapter.assignment_backend": "materialized",
                "adapter.proj_seed": 42,
            }
        )
        # LoRA and Uni-LoRA as the script runs them (fm.py:172-194): its defaults, since the
        # README gives no command for either, at the protocol's lr 2e-4 (fm.py:273). Their
        # 16 examples a step come as the defaults' 2 x 8 (fm.py:270-271), not GPart's 4 x 4:
        # the same examples and, Trainer normalising the loss by the tokens of the whole
        # step, the same gradient, up to float summation order.
        micro = {"training.batch_size": 2, "training.grad_accum": 8}
        # LoRA r=4, alpha=4, dropout 0.05 on q/k/v/o (fm.py:173-182, :228-230).
        lora = {
            **_PROTOCOL,
            **micro,
            "adapter.r": 4,
            "adapter.lora_alpha": 4,
            "adapter.lora_dropout": 0.05,
            "adapter.target_modules": _QKVO,
        }
        out["lora", size] = freeze(lora)
        # DoRA (not in the reference), LoRA with a learned magnitude, at the same settings.
        out["dora", size] = freeze(lora)
        # Uni-LoRA (fm.py:184-194, :228-232): r 4, d 524,288 whatever the model, dropout
        # 0.05 on q/k/v/o, lr 2e-4. Not followed: --init_bound's default 0.0 (fm.py:232).
        # Uni-LoRA gathers both A and B from theta_d, so a zero theta_d has zero gradient
        # and never moves (that run trains nothing), and peft's UniLoraConfig refuses a
        # bound of 0; 0.02 is peft's default and the reference's GLUE value (docs/math.md).
        out["unilora", size] = freeze(
            {
                **_PROTOCOL,
                **micro,
                "adapter.r": 4,
                "adapter.theta_d_length": 524_288,
                "adapter.unilora_dropout": 0.05,
                "adapter.init_theta_d_bound": 0.02,
                "adapter.target_modules": _QKVO,
                # never passed (fm.py:185-194): their fork's default 42, whatever --seed is
                "adapter.proj_seed": 42,
            }
        )
        # Not in the reference's script (--adapter_type lora / unilora / gpart, fm.py:223-227).
        # VeRA, FourierFT, VB-LoRA: no MetaMathQA setting published with this protocol;
        # their own defaults on q/k/v/o at 2e-3, the Uni-LoRA paper's MetaMathQA rate
        # (methods with few trained numbers train at adapter-scale rates). Starting points:
        # sweep before reporting.
        few = {**_PROTOCOL, "training.lr": 2e-3, "adapter.target_modules": _QKVO}
        for name in ("vera", "fourierft", "vblora"):
            out[name, size] = freeze(few)
        if size in QUANTIZED_SIZES:
            continue  # bitfit / head / full train base tensors: refused on a 4-bit base
        # BitFit trains the biases (Qwen2 has q/k/v biases; Llama, Mistral and Gemma have
        # none, so it finds nothing to train there); "head" has no new head on a causal
        # LM. Both kept for completeness with the protocol's values.
        out["bitfit", size] = freeze(_PROTOCOL)
        out["head", size] = freeze(_PROTOCOL)
        # Full fine-tuning: MetaMath's full fine-tuning rate (2e-5, Llama-2-7B).
        out["full", size] = freeze({**_PROTOCOL, "training.lr": 2e-5})
    return out


PRESETS = DomainPresets(
    domain="math",
    default_size="qwen2.5-0.5b",
    size=freeze(SIZE_PRESETS),
    adapter=freeze(_adapter_presets()),
    task=freeze({}),
)
