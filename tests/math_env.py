"""An offline decoder setting in a temporary directory: tiny Llama- and Qwen2-shaped causal
LMs built from configs, a tiny byte-level BPE tokenizer saved beside each, and small
MetaMathQA-shaped jsonl files."""

from __future__ import annotations

import json
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` 2-digit additions: query "What is a + b?", response "a + b = c"."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 49), rng.randint(10, 49)
        out.append({"query": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}"})
    return out


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def tiny_tokenizer(*, bos: bool, chat: bool):
    """A byte-level BPE (vocab ~300) with ``</s>`` as EOS and no pad token; ``bos`` adds
    ``<s>`` in front of every text (Llama-style); ``chat`` gives it a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [f"{r['query']} {r['response']}" for r in rows(200)]
    corpus += ["Question: Answer: Below is an instruction ### Response: user assistant"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>" if bos else None,
        eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if chat:
        fast.chat_template = CHATML
    return fast


# Widths bitsandbytes' 4-bit CPU kernel accepts (multiples of its block size, 64): the
# tiny models' shape overrides for a quantized base.
BNB_WIDE = dict(hidden_size=64, intermediate_size=128)


def write_tiny_decoder(path: Path, family: str = "llama", seed: int = 0, **shape) -> Path:
    """A two-layer ``llama`` (BOS, no chat template) or ``qwen2`` (no BOS, ChatML)
    checkpoint with its tokenizer; neither tokenizer has a pad token. `shape` overrides
    the config's sizes (bitsandbytes' 4-bit CPU kernel wants widths in multiples of 64)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer(bos=family == "llama", chat=family == "qwen2")
    shape = (
        dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        )
        | shape
    )
    torch.manual_seed(seed)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
