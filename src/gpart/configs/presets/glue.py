"""GLUE presets (RoBERTa base / large): the paper's settings for GPart and its baselines.

GPart, LoRA, VeRA, Uni-LoRA, BitFit, head-only and full fine-tuning run what the paper
authors' script runs for them (SamsungLabs/GPart at 320f0c1,
``src/scripts/glue/finetune_roberta_glue.py``; their configs are cited as
``configs/...:LINE``, their loop as ``utils/...:LINE``). DoRA, FourierFT and VB-LoRA are not
in their code: DoRA takes LoRA's values (the comment beside it says why), FourierFT and
VB-LoRA have no GLUE preset and run the defaults of their config; treat those as starting
points to sweep.
"""

from __future__ import annotations

from typing import Any

from gpart.configs.presets.base import DomainPresets, freeze

SIZES = ("base", "large")

# Layer 4. Only what the size itself decides: which checkpoint. Anything else here would
# override the per-task presets (this layer comes after them).
SIZE_PRESETS = {
    "base": freeze({"model.base_model": "FacebookAI/roberta-base"}),
    "large": freeze({"model.base_model": "FacebookAI/roberta-large"}),
}

# The protocol every PEFT method below shares (LoRA/VeRA/Uni-LoRA/GPart papers): full-length
# inputs, AdamW with decoupled weight decay 0.1, linear schedule with 6% warmup. Stated
# explicitly, not left to the dataclass defaults, so a change of defaults cannot move them.
# The rest is how the paper authors' loop runs it (SamsungLabs/GPart at 320f0c1, one loop
# for every method), so that the default run is their experiment step for step; each has
# the alternative named beside it (docs/glue.md, "Reproducing the paper").
_PEFT_PROTOCOL: dict[str, Any] = {
    "training.max_seq_length": 512,
    "training.weight_decay": 0.1,
    "training.warmup_ratio": 0.06,
    "training.scheduler": "linear",
    # No clipping: utils/trainer.py:227-229 steps right after loss.backward().
    "training.max_grad_norm": None,
    # utils/training_config.py:163-169: int(n / batch * epochs) steps, int(0.06 T) warmup.
    # "exact" spans the steps really taken instead.
    "training.schedule_steps": "reference",
    # utils/data_loader_utils.py:227-231: DataLoader(shuffle=True), each epoch seeded from
    # the global torch RNG after set_seed and model loading (utils/trainer.py:561-577).
    # "seeded" (Trainer's own) is independent of dropout and works under DDP.
    "training.data_order": "reference",
    # utils/data_loader_utils.py:52-66: datasets' stratified train_test_split of
    # min(max(0.15, 300 / n), 0.2), i.e. 15 % on every GLUE task, seeded with the run seed.
    "data.selection_split": "reference",
}
# Query/value projections: the attention targets all these baselines adapt on GLUE.
_QV = ("query", "value")  # a tuple: presets hold no mutable values

# The reference's loop for every method but GPart (utils/adapter_utils.py:256-278): weight
# decay on the tensors with more than one dimension only, so VeRA's scaling vectors and
# Uni-LoRA's theta_d train undecayed. (GPart's theta is decayed there explicitly, :264-270,
# which is decay_theta; its other tensors are biases and norms, undecayed either way.)
_BASELINE_PROTOCOL: dict[str, Any] = {**_PEFT_PROTOCOL, "training.decay_vectors": False}
# What the reference's configs fall back to when a method's task table sets no value
# (configs/base_config.py:17,23-24, resolved at :157-159): batch 32, lr and head lr 1e-3.
_REFERENCE_FALLBACK: dict[str, Any] = {
    "training.batch_size": 32,
    "training.lr": 1e-3,
    "training.head_lr": 1e-3,
}
# The epochs every baseline's task table gives, base and large alike (configs/adapter_configs/
# lora.py:39-46, vera.py:42-49, bitfit.py:28-35, head.py:28-35, full.py:28-35).
_BASELINE_EPOCHS = {"cola": 80, "sst2": 60, "mrpc": 30, "qnli": 25, "rte": 80, "stsb": 40}

# ---- GPart --------------------------------------------------------------------------------
# configs/adapter_configs/gpart.py:35-57 (base and large alike), lr 5e-3 and the head lr /
# epochs per task and size from :62-80; proj_seed follows --seed (utils/adapter_utils.py:91-96).
_GPART = {
    **_PEFT_PROTOCOL,
    "adapter.d": 23040,
    "adapter.gpart_dropout": 0.1,
    "adapter.target_modules": _QV,
    "training.lr": 5e-3,
    "training.batch_size": 32,
}
# task: (base epochs, base head_lr, large epochs, large head_lr)
_GPART_TASKS = {
    "cola": (80, 2e-3, 60, 2e-2),
    "sst2": (60, 5e-4, 30, 2e-4),
    "mrpc": (30, 1e-3, 40, 2e-3),
    "qnli": (25, 1e-3, 25, 5e-3),
    "rte": (160, 1e-2, 120, 5e-3),
    "stsb": (80, 2e-4, 80, 1e-4),
}

# ---- Uni-LoRA -----------------------------------------------------------------------------
# configs/adapter_configs/unilora.py:24-38 (base and large alike): r 4, theta_d_length
# 23,040 (GPart's d: the two compare at an equal number of trained numbers), dropout 0.1,
# init bound 0.02, query/value; lr 5e-3 from its task tables (:42-59), batch 32 (the fallback).
_UNILORA = {
    **_BASELINE_PROTOCOL,
    "adapter.r": 4,
    "adapter.theta_d_length": 23040,
    "adapter.unilora_dropout": 0.1,
    "adapter.init_theta_d_bound": 0.02,
    "adapter.target_modules": _QV,
    # utils/adapter_utils.py:36-119 never passes proj_seed: their fork's UniLoRAConfig
    # default, 42, whatever --seed is (peft/tuners/unilora/config.py:70-73)
    "adapter.proj_seed": 42,
    "training.lr": 5e-3,
    "training.batch_size": 32,
}
_UNILORA_TASKS = {
    "cola": (80, 5e-3, 40, 2e-2),
    "sst2": (60, 1e-4, 20, 2e-4),
    "mrpc": (30, 2e-2, 40, 2e-3),
    "qnli": (25, 2e-4, 20, 5e-3),
    "rte": (80, 5e-4, 40, 5e-3),
    "stsb": (40, 2e-4, 40, 1e-4),
}

# ---- LoRA ---------------------------------------------------------------------------------
# configs/adapter_configs/lora.py:23-35: r 8, alpha 8, dropout 0.1 on query/value, base and
# large alike; head lr 1e-3 on every task (:39-46).
_LORA = {
    **_BASELINE_PROTOCOL,
    "adapter.r": 8,
    "adapter.lora_alpha": 8,
    "adapter.lora_dropout": 0.1,
    "adapter.target_modules": _QV,
    "training.head_lr": 1e-3,
}
# task: (epochs, batch_size, lr), lora.py:39-46. The reference has no large table for LoRA
# (configs/config.py:109-112 then takes this one), so large runs these too.
_LORA_TASKS = {
    "cola": (80, 32, 4e-4),
    "sst2": (60, 16, 5e-4),
    "mrpc": (30, 16, 4e-4),
    "qnli": (25, 32, 4e-4),
    "rte": (80, 32, 4e-4),
    "stsb": (40, 16, 4e-4),
}

# ---- VeRA ---------------------------------------------------------------------------------
# configs/adapter_configs/vera.py:24-38 (base and large alike): r 8, dropout 0.1, d_initial
# 0.1, projection_prng_key 0 (fixed, whatever --seed is) on query/value. Its task table sets
# epochs only (:42-49), so lr, head lr and batch are the fallbacks: 1e-3, 1e-3, 32.
_VERA = {
    **_BASELINE_PROTOCOL,
    **_REFERENCE_FALLBACK,
    "adapter.r": 8,
    "adapter.vera_dropout": 0.1,
    "adapter.d_initial": 0.1,
    "adapter.projection_prng_key": 0,
    # utils/adapter_utils.py:108: the projections are stored with the adapter
    "adapter.save_projection": True,
    "adapter.target_modules": _QV,
}

# ---- BitFit, head-only, full fine-tuning ---------------------------------------------------
# configs/adapter_configs/{bitfit,head,full}.py: no setting of their own, so the fallbacks:
# lr 1e-3 (every bias / the whole encoder), head lr 1e-3, batch 32, on the same loop, base
# and large alike. For full fine-tuning that is the reference's run, not RoBERTa's own GLUE
# recipe (Liu et al. 2019: lr 1e-5 to 3e-5, 10 epochs, batch 16 or 32); that one is
# `training.lr 2e-5 training.head_lr none task.epochs 10` (docs/glue.md, "Reproducing the
# paper").
_FALLBACK_ONLY = {**_BASELINE_PROTOCOL, **_REFERENCE_FALLBACK}


def _adapter_presets() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for size in SIZES:
        out["gpart", size] = freeze(_GPART)
        out["unilora", size] = freeze(_UNILORA)
        out["lora", size] = freeze(_LORA)
        # DoRA (not in the reference) is LoRA plus a magnitude vector; the usual comparison
        # keeps LoRA's settings, the magnitude undecayed as the reference's loop would.
        out["dora", size] = freeze(_LORA)
        out["vera", size] = freeze(_VERA)
        for name in ("bitfit", "head", "full"):
            out[name, size] = freeze(_FALLBACK_ONLY)
    return out


def _task_presets() -> dict[tuple[str, str, str], Any]:
    out: dict[tuple[str, str, str], Any] = {}
    for adapter, table in (("gpart", _GPART_TASKS), ("unilora", _UNILORA_TASKS)):
        for task, (b_ep, b_hlr, l_ep, l_hlr) in table.items():
            out[adapter, task, "base"] = freeze({"epochs": b_ep, "head_lr": b_hlr})
            out[adapter, task, "large"] = freeze({"epochs": l_ep, "head_lr": l_hlr})
    for task, (epochs, batch, lr) in _LORA_TASKS.items():
        for size in SIZES:
            lora = freeze({"epochs": epochs, "batch_size": batch, "lr": lr})
            out["lora", task, size] = lora
            out["dora", task, size] = lora
    for task, epochs in _BASELINE_EPOCHS.items():
        for size in SIZES:
            for name in ("vera", "bitfit", "head", "full"):
                out[name, task, size] = freeze({"epochs": epochs})
    return out


PRESETS = DomainPresets(
    domain="glue",
    default_size="base",
    size=freeze(SIZE_PRESETS),
    adapter=freeze(_adapter_presets()),
    task=freeze(_task_presets()),
)
