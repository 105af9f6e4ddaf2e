"""Shared fixtures: tiny transformers *configs* (models are built from them, never downloaded)."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network; set before transformers / huggingface_hub read it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def tiny_roberta_config():
    from tiny_models import tiny_roberta_config

    return tiny_roberta_config()


@pytest.fixture
def tiny_bert_config():
    from tiny_models import tiny_bert_config

    return tiny_bert_config()
