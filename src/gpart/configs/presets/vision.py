"""Vision presets: ViT (or any image backbone) on the nine image-classification datasets.

Values come from the GPart paper's ViT protocol (the reference code's settings); where it
gives none, the comment says what was chosen and why. Targets are the symbolic
``query-value`` (`gpart.configs.bridge.QUERY_VALUE`): transformers 5 names ViT/DINOv2's
projections q_proj/v_proj, older families query/value, and one preset serves all of them.
"""

from __future__ import annotations

from typing import Any

from gpart.configs.presets.base import DomainPresets, freeze

SIZES = ("base", "large")
QV = ("query-value",)

# ImageNet-21k checkpoints: the starting point PEFT papers fine-tune on CIFAR and friends.
SIZE_PRESETS = {
    "base": freeze({"model.base_model": "google/vit-base-patch16-224-in21k"}),
    "large": freeze({"model.base_model": "google/vit-large-patch16-224-in21k"}),
}

# The training protocol every method shares: 20 epochs, AdamW with weight decay 0.01, a
# linear schedule with 40 % warmup, an effective batch of 256 (base: 64 x 4) / 128 (large:
# 32 x 4), fp16 on CUDA ("auto": fp32 on a CPU), the best model by selection accuracy.
_PROTOCOL: dict[str, Any] = {
    "training.epochs": 20,
    "training.weight_decay": 0.01,
    "training.scheduler": "linear",
    "training.warmup_ratio": 0.4,
    "training.grad_accum": 4,
    "training.precision": "auto",
    "training.model_selection": "best",
    "training.lr": 4e-3,
    "training.head_lr": 3e-3,
}
_BATCH = {"base": 64, "large": 32}
# The trainable budget Uni-LoRA and FourierFT use on ViT (72K base, 144K large).
_D = {"base": 72_000, "large": 144_000}


def _adapter_presets() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for size in SIZES:
        common = {**_PROTOCOL, "training.batch_size": _BATCH[size]}
        out["gpart", size] = freeze(
            {**common, "adapter.d": _D[size], "adapter.dropout": 0.0, "adapter.target_modules": QV}
        )
        # LoRA r=4, alpha=8 on query/value; no lr of its own is given, so it runs at the
        # shared protocol's (sweep before reporting).
        out["lora", size] = freeze(
            {**common, "adapter.r": 4, "adapter.alpha": 8, "adapter.target_modules": QV}
        )
        out["dora", size] = out["lora", size]
        # Uni-LoRA at GPart's d; init bound 0.02 (a zero init gives it zero gradients).
        out["unilora", size] = freeze(
            {
                **common,
                "adapter.r": 4,
                "adapter.d": _D[size],
                "adapter.init_bound": 0.02,
                "adapter.target_modules": QV,
            }
        )
        # FourierFT: 3,000 frequencies per layer, 72K on base's 24 query/value layers.
        out["fourierft", size] = freeze(
            {**common, "adapter.n_frequency": 3000, "adapter.target_modules": QV}
        )
        out["vera", size] = freeze({**common, "adapter.target_modules": QV})
        out["vblora", size] = freeze({**common, "adapter.target_modules": QV})
        # The linear probe trains the head only, at the head's rate.
        out["head", size] = freeze(common)
        out["bitfit", size] = freeze(common)
        # Full fine-tuning moves every weight: two orders of magnitude below the adapters'
        # rate, as ViT fine-tuning recipes use with AdamW; the head at the same rate.
        out["full", size] = freeze({**common, "training.lr": 2e-5, "training.head_lr": None})
    return out


def _task_presets() -> dict[tuple[str, str, str], Any]:
    # flowers102: the reference's example run (30 epochs, lr 6e-3, head lr 5e-3).
    flowers = freeze({"epochs": 30, "lr": 6e-3, "head_lr": 5e-3})
    return {("gpart", "flowers102", size): flowers for size in SIZES}


PRESETS = DomainPresets(
    domain="vision",
    default_size="base",
    size=freeze(SIZE_PRESETS),
    adapter=freeze(_adapter_presets()),
    task=freeze(_task_presets()),
)
