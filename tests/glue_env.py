"""A complete offline GLUE setting in a temporary directory: a word-level tokenizer, tiny
RoBERTa and BERT checkpoints built from configs, and tiny learnable datasets for every task
in GLUE's own column names."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "a", "movie", "plot", "is", "was"]
POSITIVE = {"good", "great", "fine"}
COLUMNS = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qqp": ("question1", "question2"),
}


def _sentence(rng: random.Random, label: int) -> str:
    key = rng.choice(sorted(POSITIVE) if label else ["bad", "awful", "poor"])
    filler = rng.sample(["the", "a", "movie", "plot", "is", "was"], 3)
    return " ".join([filler[0], filler[1], filler[2], key])


def _rows(task: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % (3 if task == "mnli" else 2)
        row = {c: _sentence(rng, label % 2) for c in COLUMNS[task]}
        if task == "stsb":
            row["label"] = float(label * 4 + rng.random())
        else:
            row["label"] = label
        row["idx"] = i
        rows.append(row)
    return rows


def write_glue_data(
    root: Path, tasks=("cola", "sst2", "mrpc", "qnli", "rte", "stsb"), n_train=64, n_val=24
) -> Path:
    for task in tasks:
        d = root / task
        d.mkdir(parents=True, exist_ok=True)
        splits = {"train": n_train}
        if task == "mnli":
            splits.update(validation_matched=n_val, validation_mismatched=n_val)
        else:
            splits["validation"] = n_val
        for k, (split, n) in enumerate(splits.items()):
            with open(d / f"{split}.jsonl", "w") as f:
                for row in _rows(task, n, seed=k):
                    f.write(json.dumps(row) + "\n")
    return root


def write_tokenizer(path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=64,
    )
    fast.save_pretrained(path)
    return fast


def write_tiny_model(path: Path, family: str = "roberta", seed: int = 0, **shape) -> Path:
    """A two-layer RoBERTa or BERT classifier with its tokenizer; `shape` overrides the
    config's sizes (bitsandbytes' 4-bit CPU kernel wants widths in multiples of 64)."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig

    torch.manual_seed(seed)
    common = (
        dict(
            vocab_size=len(WORDS) + 5,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            pad_token_id=1,
        )
        | shape
    )
    if family == "roberta":
        cfg = RobertaConfig(max_position_embeddings=72, bos_token_id=0, eos_token_id=2, **common)
    else:
        cfg = BertConfig(max_position_embeddings=64, **common)
    model = AutoModelForSequenceClassification.from_config(cfg)
    model.save_pretrained(path)
    write_tokenizer(path)
    return path
