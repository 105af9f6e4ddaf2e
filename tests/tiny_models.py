"""Tiny models built from config objects (no download) shared by the tuner tests."""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

# Two layers of width 32; intermediate 37 so no dimension coincides with another.
TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)


def tiny_roberta_config(**kw) -> RobertaConfig:
    return RobertaConfig(**{**TINY, **kw})


def tiny_bert_config(**kw) -> BertConfig:
    return BertConfig(**{**TINY, **kw})


def tiny_roberta(num_labels: int = 3, seed: int = 0) -> RobertaForSequenceClassification:
    torch.manual_seed(seed)
    return RobertaForSequenceClassification(tiny_roberta_config(num_labels=num_labels)).eval()


def tiny_bert(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_labels=num_labels)).eval()


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=100,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


class ConvNet(nn.Module):
    """A patch-embedding conv, an embedding and a linear head: one of every other layer type."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.patch = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.emb = nn.Embedding(10, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        patches = self.patch(images).flatten(2).mean(-1)
        return self.head(self.norm(patches + self.emb(tokens).mean(1)))


def tokens(batch: int = 2, length: int = 10, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 100, (batch, length), generator=g)
