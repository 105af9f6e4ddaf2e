"""``model.quantization``: every runner's base model in bitsandbytes 4-bit or 8-bit storage.

QLoRA's recipe (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs"):
the frozen base is stored as 4-bit NormalFloat codes with double quantization (the
quantization constants quantized too), computes in bf16, and only the adapter trains, in
fp32. ``nf4`` and ``fp4`` are that with NF4 or FP4 codes; ``int8`` is LLM.int8()'s
8-bit storage. The model is loaded as any transformers user loads one
(``from_pretrained(path, quantization_config=BitsAndBytesConfig(...))``), so GPart's
layers meet bitsandbytes' own `Linear4bit` / `Linear8bitLt` (`gpart.tuner.bnb`).

What peft users know as ``peft.prepare_model_for_kbit_training`` is not called, on purpose;
its three steps are covered as follows:

- it freezes every base parameter: `get_peft_model` does that already;
- it casts every non-quantized fp16 / bf16 parameter (embeddings, norms, the LM head) to
  fp32: on the CPU the runners load those in fp32 anyway; on a GPU the math runner loads
  them in bf16, and an upcast would double their memory (Llama-3.1-8B's embeddings and LM
  head are 1.05G numbers: 4.2 GB in fp32 instead of 2.1 GB) for tensors that never train,
  which is why QLoRA's own training script casts the embeddings and LM head back to bf16
  afterwards. The norms compute in fp32 inside transformers' RMSNorm either way;
- it turns on activation checkpointing with the reentrant variant and, for that,
  `enable_input_require_grads`: the runners' ``training.gradient_checkpointing`` (on in
  the 7B / 8B presets) uses the non-reentrant variant, which needs neither (peft's own
  comment says so), and stays the one switch for it.

A head the run trains (GLUE's and the vision runner's classifier) stays in floating point:
bitsandbytes would otherwise quantize it like any `nn.Linear`, and a quantized head cannot
train. The 4-bit repacking bitsandbytes does on some CPUs at an inference forward is undone
before every training step (`UnpackCpuLayoutCallback`), for every adapter type; a GPart
model also undoes it itself before each forward with gradients (`GPartModel`'s guard).

bitsandbytes is optional: the `quant` extra (``uv sync --extra quant``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from gpart.configs import ConfigError, ExperimentConfig, get_domain
from gpart.heads import head_module_names


def require_bitsandbytes(quantization: str) -> None:
    """Raise one `ConfigError` naming the fix when bitsandbytes is not installed."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"model.quantization {quantization}: needs bitsandbytes, which is not installed; "
            "install it with `uv sync --extra quant` (or `pip install bitsandbytes`)"
        ) from None


def quantization_config(cfg: ExperimentConfig, auto_class: Any, dtype: torch.dtype) -> Any:
    """The `transformers.BitsAndBytesConfig` of ``cfg.model.quantization`` (not "none").

    Args:
        cfg: the run's config (single-task): the quantization, the precision, the model.
        auto_class: the transformers auto class the runner loads the model with; its
            skeleton (built on the meta device, no weights read) names the task head,
            which is kept out of quantization.
        dtype: the dtype the run computes in (`gpart.runners.common.compute_dtype`), the
            one a 4-bit base dequantizes to.

    Returns:
        The config to pass as ``quantization_config`` to ``from_pretrained``.

    Raises:
        ConfigError: bitsandbytes is not installed.
    """
    from transformers import AutoConfig, BitsAndBytesConfig

    quantization = cfg.model.quantization
    require_bitsandbytes(quantization)
    if quantization == "int8":
        kwargs: dict[str, Any] = {"load_in_8bit": True}
    else:
        kwargs = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": quantization,
            "bnb_4bit_use_double_quant": True,  # as QLoRA: the constants in 8 bits, ~0.37 bit per weight less
            "bnb_4bit_compute_dtype": dtype,
        }
    task_type = get_domain(cfg.domain).peft_task_type or "SEQ_CLS"
    if task_type != "CAUSAL_LM":  # a causal LM has no new head; its LM head stays float
        from transformers.quantizers.base import get_keys_to_not_convert

        # Module names only: the meta device allocates nothing and reads no weights.
        with torch.device("meta"):
            skeleton = auto_class.from_config(AutoConfig.from_pretrained(cfg.model.base_model))
        # Setting the skip list replaces transformers' default one (the output embeddings
        # and what is tied to them), so both are given.
        kwargs["llm_int8_skip_modules"] = sorted(
            {*get_keys_to_not_convert(skeleton), *head_module_names(skeleton, task_type)}
        )
    return BitsAndBytesConfig(**kwargs)


class UnpackCpuLayoutCallback(TrainerCallback):
    """Undo bitsandbytes' inference-only 4-bit layout before every training step.

    An evaluation during training (best-model selection, ``training.eval_every``) runs the
    model in eval mode without gradients; on a CPU with AVX512-BF16 that repacks every
    `Linear4bit` weight into a layout whose training forward passes no gradient to its
    input (`gpart.tuner.bnb.unpack_cpu_layout`). The next step would then train the
    adapter of the last layers only, without an error. Restoring is exact and cheap (a
    flag check per layer when nothing was repacked).
    """

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        if model is not None:
            from gpart.tuner.bnb import unpack_cpu_layouts

            unpack_cpu_layouts(model)


def dequantized(model: Any) -> Any:
    """`model` with bitsandbytes' layers back in fp32 (`model` itself when not quantized).

    An adapter trained on a quantized base learned its update against the dequantized
    codes, so those are W0 wherever the adapter is merged (``--export_merged``,
    ``eval_math.py``): transformers' own `dequantize` replaces each quantized layer by an
    `nn.Linear` holding them; nothing is quantized again.
    """
    if getattr(model, "hf_quantizer", None) is None:
        return model
    return model.dequantize(dtype=torch.float32)
