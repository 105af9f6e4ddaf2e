"""Benchmark models, built from config objects only (never downloaded).

A model shape is a preset name or a local config (a directory holding ``config.json`` or a
``.json`` file). The task decides the head: sequence classification for encoders, causal LM
for decoders, image classification (pixel inputs) for vision transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    LlamaConfig,
    PretrainedConfig,
    Qwen2Config,
    RobertaConfig,
    ViTConfig,
)
from transformers.pytorch_utils import Conv1D

from gpart.bench.errors import BenchError
from gpart.configs.bridge import query_value_names
from gpart.heads import head_module_names, is_head_param

TASKS = ("auto", "seq_cls", "causal_lm", "image_cls")
# `--quantize`: the base model's linear layers as bitsandbytes stores them (see
# `ModelSpec.build`): NF4 with double quantization (QLoRA's recipe), or LLM.int8().
QUANTIZE = ("none", "nf4", "int8")
TARGET_SETS = ("qv", "all-linear")
# Also selectable (`--targets qkvo`), not part of `both`: all four attention projections,
# the decoder fine-tuning targets of the math runs.
EXTRA_TARGET_SETS = ("qkvo",)
# Leaf names of the attention projections q, k, v, o per family: decoders (Llama, Qwen2,
# Mistral, ...), then BERT/RoBERTa/ViT (whose output projection is `attention.output.dense`).
_QKVO_NAMES = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("query", "key", "value", "attention.output.dense"),
)

# Model families that are decoders: `--task auto` trains them as causal LMs.
_IMAGE_TYPES = {"vit", "deit", "dinov2", "beit", "swin", "convnext"}
_DECODER_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gpt2", "gpt_neox", "phi", "gemma"}


def _roberta(**kw) -> RobertaConfig:
    return RobertaConfig(num_labels=2, **kw)


def _qwen2(**kw) -> Qwen2Config:
    # pad_token_id lets Qwen2ForSequenceClassification batch when asked for seq_cls.
    return Qwen2Config(pad_token_id=0, tie_word_embeddings=True, **kw)


PRESETS: dict[str, Callable[[], PretrainedConfig]] = {
    # transformers' RobertaConfig defaults are exactly roberta-base's shape (125M parameters).
    "roberta-base": lambda: _roberta(),
    "roberta-large": lambda: _roberta(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
    # Qwen2-0.5B's shape (the smallest released Qwen2).
    "qwen2-0.5b": lambda: _qwen2(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
    ),
    # A Qwen2-shaped decoder small enough for a 2-core CPU (GQA, SwiGLU, RMSNorm, RoPE).
    "qwen2-small": lambda: _qwen2(
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    ),
    # SmolLM2-135M's shape (Llama: GQA 9/3 heads, SwiGLU, tied embeddings).
    "smollm2-135m": lambda: LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        pad_token_id=0,
    ),
    # transformers' ViTConfig defaults are ViT-B/16 at 224 pixels (86M parameters), the
    # paper's image backbone; 100 classes as CIFAR-100.
    "vit-base": lambda: ViTConfig(num_labels=100),
    # RoBERTa-base's 12 blocks at width 64: 72 linear layers whose matmuls take
    # microseconds, so a step's time is each layer's fixed cost (calls, launches, Python),
    # as for real layer sizes on a GPU. The CPU stand-in for that regime: with
    # `--batch_size 2 --seq_len 16 --threads 1 --compile on` (docs/performance.md).
    "roberta-launch-bound": lambda: _roberta(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=64,
    ),
    # Tiny shapes for tests and smoke runs (seconds).
    "vit-tiny": lambda: ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    ),
    "roberta-tiny": lambda: _roberta(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
    ),
    "qwen2-tiny": lambda: _qwen2(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    ),
}


def load_config(spec: str, num_layers: int | None = None) -> PretrainedConfig:
    """A preset name, a directory with config.json, or a config .json file; `num_layers`
    keeps only the first blocks (same shape per block, a shorter stack)."""
    config = _load_config(spec)
    if num_layers is not None:
        if not hasattr(config, "num_hidden_layers"):
            raise BenchError(f"--num_layers: {spec!r} has no num_hidden_layers to change")
        config.num_hidden_layers = num_layers
        if getattr(config, "layer_types", None) is not None:  # per-layer lists follow
            config.layer_types = list(config.layer_types)[:num_layers]
    return config


def _load_config(spec: str) -> PretrainedConfig:
    if spec in PRESETS:
        return PRESETS[spec]()
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BenchError(f"--model_config: directory {spec!r} has no config.json")
        path = path / "config.json"
    if not path.is_file():
        raise BenchError(
            f"--model_config: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a config "
            "file or directory"
        )
    try:
        data = json.loads(path.read_text())
        model_type = data.pop("model_type")
        return AutoConfig.for_model(model_type, **data)
    except (json.JSONDecodeError, KeyError, ValueError) as err:
        raise BenchError(
            f"--model_config: cannot read a transformers config from {spec!r}: {err}"
        ) from None


def resolve_task(config: PretrainedConfig, task: str) -> str:
    if task != "auto":
        return task
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return "causal_lm"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "seq_cls"
    if any(a.endswith("ForImageClassification") for a in archs):
        return "image_cls"
    if config.model_type in _IMAGE_TYPES:
        return "image_cls"
    return "causal_lm" if config.model_type in _DECODER_TYPES else "seq_cls"


@dataclass
class ModelSpec:
    config: PretrainedConfig
    task: str  # "seq_cls" | "causal_lm" | "image_cls"

    @property
    def peft_task_type(self) -> str | None:
        return {"seq_cls": "SEQ_CLS", "causal_lm": "CAUSAL_LM"}.get(self.task)

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def num_labels(self) -> int:
        return int(getattr(self.config, "num_labels", 2))

    @property
    def auto_class(self) -> type:
        return {
            "seq_cls": AutoModelForSequenceClassification,
            "causal_lm": AutoModelForCausalLM,
            "image_cls": AutoModelForImageClassification,
        }[self.task]

    def build(
        self,
        device: torch.device,
        dtype: torch.dtype,
        seed: int = 0,
        quantize: str = "none",
        checkpoint_dir: str | Path | None = None,
    ) -> nn.Module:
        """The randomly initialised model (seeded), in `dtype` on `device`.

        With `quantize` (``nf4``, ``int8``) the model is saved to `checkpoint_dir` (once:
        a directory that already holds it is reused, so every process of one benchmark
        quantizes the same weights) and loaded back with transformers'
        ``from_pretrained(..., quantization_config=BitsAndBytesConfig(...))``, exactly as a
        user loads a quantized base. That is what decides which layers become
        ``Linear4bit`` / ``Linear8bitLt`` and which stay in `dtype` (the output head and
        whatever the quantizer skips), and it sets the flags peft and TRL read
        (``is_loaded_in_4bit``, ``quantization_method``); replacing layers in place with
        bitsandbytes would have to re-implement those choices.
        """
        torch.manual_seed(seed)
        if quantize == "none":
            model = self.auto_class.from_config(self.config, attn_implementation="sdpa")
            return model.to(device=device, dtype=dtype)
        if checkpoint_dir is None:
            raise ValueError("a quantized base is loaded from a checkpoint: give checkpoint_dir")
        path = Path(checkpoint_dir)
        if not (path / "config.json").is_file():
            model = self.auto_class.from_config(self.config, attn_implementation="sdpa")
            model.to(dtype=dtype).save_pretrained(path)
            del model
        # bitsandbytes quantizes a weight as it moves to the GPU: load straight onto it.
        where = {"device_map": {"": device.index or 0}} if device.type == "cuda" else {}
        return self.auto_class.from_pretrained(
            path,
            quantization_config=quantization_config(quantize, dtype),
            dtype=dtype,
            attn_implementation="sdpa",
            **where,
        )


def quantization_config(quantize: str, compute_dtype: torch.dtype):
    """transformers' `BitsAndBytesConfig` for `--quantize`: QLoRA's 4-bit recipe (NF4, double
    quantization, compute in the benchmark's dtype) or LLM.int8() (`Linear8bitLt`)."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise BenchError(
            f"--quantize {quantize}: bitsandbytes is not installed; `uv sync --extra quant`"
        ) from None
    if quantize == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if quantize == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise BenchError(f"--quantize: unknown {quantize!r}; valid: {', '.join(QUANTIZE)}")


def output_module_names(model: nn.Module, spec: ModelSpec) -> list[str]:
    """The output layers: what 'head only' trains and what no method adapts.

    The task head as every runner finds it (`gpart.heads.head_module_names`: ``classifier``,
    ``score``), or for a causal LM, which has no new head, its output projection
    (``lm_head``).
    """
    names = head_module_names(model, spec.peft_task_type)
    if not names:
        out = model.get_output_embeddings()
        names = [n for n, child in model.named_children() if out is not None and child is out]
    if not names:
        raise BenchError(f"no output head on {type(model).__name__}")
    return names


def target_modules(model: nn.Module, spec: ModelSpec, target_set: str) -> list[str]:
    """Full module names of the adapted layers.

    ``qv``: the attention query/value projections, under the family's names (LoRA's default
    targets; `gpart.configs.bridge.query_value_names`);
    ``qkvo``: the attention's query, key, value and output projections;
    ``all-linear``: every linear layer of the encoder/decoder stack, heads excluded.
    """
    heads = output_module_names(model, spec)
    linear = [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, Conv1D)) and n and not is_head_param(n, heads)
    ]
    if target_set == "all-linear":
        return linear
    if target_set == "qkvo":
        for names in _QKVO_NAMES:
            chosen = [n for n in linear if any(n.endswith("." + leaf) for leaf in names)]
            if chosen and all(any(n.endswith("." + leaf) for n in chosen) for leaf in names):
                return chosen
        raise BenchError(
            f"--targets qkvo: no q/k/v/o attention projections in {model.config.model_type!r}"
        )
    suffixes = query_value_names(model)
    if not suffixes:
        raise BenchError(f"--targets qv: no query/value projections in {model.config.model_type!r}")
    return [n for n in linear if n.split(".")[-1] in set(suffixes)]


def build_workload(
    model_config: str,
    task: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    seed: int,
    batch_size: int,
    seq_len: int,
    num_layers: int | None = None,
    quantize: str = "none",
    checkpoint_dir: str | Path | None = None,
) -> tuple[ModelSpec, nn.Module, dict[str, torch.Tensor]]:
    """The benchmark's model and batch: built alike in the timing run and in memory probes
    (a quantized base through `checkpoint_dir`, see `ModelSpec.build`)."""
    config = load_config(model_config, num_layers)
    spec = ModelSpec(config, resolve_task(config, task))
    base = spec.build(device, dtype, seed=seed, quantize=quantize, checkpoint_dir=checkpoint_dir)
    return spec, base, make_batch(spec, batch_size, seq_len, device)


def make_batch(spec: ModelSpec, batch_size: int, seq_len: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if spec.task == "image_cls":  # seq_len does not apply: the config's image size does
        size = int(spec.config.image_size)
        pixels = torch.randn(batch_size, int(spec.config.num_channels), size, size, generator=g)
        labels = torch.randint(0, spec.num_labels, (batch_size,), generator=g)
        return {"pixel_values": pixels.to(device), "labels": labels.to(device)}
    # Skip the first few ids: padding / special tokens in most vocabularies.
    low = min(3, spec.vocab_size - 1)
    input_ids = torch.randint(low, spec.vocab_size, (batch_size, seq_len), generator=g)
    if spec.task == "seq_cls":
        labels = torch.randint(0, spec.num_labels, (batch_size,), generator=g)
    else:
        labels = input_ids.clone()
    return {"input_ids": input_ids.to(device), "labels": labels.to(device)}


def check_seq_len(config: PretrainedConfig, seq_len: int) -> None:
    if config.model_type in _IMAGE_TYPES:
        return  # pixel inputs: the image size is the config's
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # RoBERTa's positions start after the padding index
    if seq_len > limit:
        raise BenchError(f"--seq_len {seq_len} exceeds the model's {limit} positions")
