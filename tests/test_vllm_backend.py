"""The vLLM backend of GSM8K / MATH evaluation: the ``vllm`` extra as uv.lock holds it, and
the glue (`gpart.evaluation.generate.generate_vllm`, ``eval_math.py ... backend vllm``)
against vLLM's own classes and signatures.

vLLM pins its own torch, so the extra conflicts with the dev group (pyproject.toml) and uv
locks it in a fork of its own. The lock tests read what each ``uv sync`` would install
(``uv export --frozen``: the lock alone, no network), for CI's syncs and for the extra's,
so CI guards the extra without installing it. The glue tests import the real vllm and
skip without it; they need no GPU (nothing is generated: the engine is replaced by one
that binds `vllm.LLM`'s signatures, lets vLLM read the saved model folder, and answers
with vLLM's own output objects). Run them in the extra's environment, beside the dev one:

    UV_PROJECT_ENVIRONMENT=.venv-vllm uv sync --locked --extra vllm --no-dev
    UV_PROJECT_ENVIRONMENT=.venv-vllm uv run --extra vllm --no-dev --with pytest \\
        pytest tests/test_vllm_backend.py -p no:cacheprovider
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gpart.configs import ConfigError
from gpart.evaluation import generate
from math_env import write_jsonl, write_tiny_decoder

ROOT = Path(__file__).resolve().parents[1]
# `uv sync` flags that change how an environment is written, not what goes in it
SYNC_ONLY = {"--locked", "--inexact", "--compile-bytecode", "--quiet", "-q"}


def _export(flags: list[str]) -> dict[str, str]:
    """Name -> version of what ``uv sync --locked <flags>`` installs on this machine,
    read from uv.lock (markers evaluated here; the project itself left out)."""
    from packaging.markers import Marker

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    cmd = [uv, "export", "--frozen", "--format", "requirements-txt", "--no-hashes",
           "--no-header", "--no-annotate", "--no-emit-project", *flags]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"{shlex.join(cmd[1:])}: {done.stderr.strip()}")
    pins = {}
    for line in done.stdout.splitlines():
        req, _, marker = line.partition(" ; ")
        name, _, version = req.strip().partition("==")
        if version and (not marker or Marker(marker).evaluate()):
            pins[name] = version
    return pins


def _sync_flags(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[:2] == ["uv", "sync"], command
    return [a for a in argv[2:] if a not in SYNC_ONLY]


def _ci_syncs() -> list[str]:
    lines = (ROOT / ".ci/run").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.strip().startswith("uv sync")]


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])


def test_ci_syncs_leave_vllm_out_and_keep_one_torch():
    syncs = _ci_syncs()
    assert len(syncs) >= 3 and syncs[0] == "uv sync --locked", syncs  # base, extras, docs
    torches = set()
    for command in syncs:
        pins = _export(_sync_flags(command))
        assert "vllm" not in pins, command
        torches.add(pins["torch"])
    # CI's later syncs are --inexact additions: they must not move the first sync's torch
    assert len(torches) == 1, torches


@pytest.mark.skipif(sys.platform != "linux", reason="vLLM's wheels (and the extra) are Linux only")
def test_the_documented_vllm_sync_installs_vllm_with_the_torch_it_pins():
    assert f"`{generate.VLLM_SYNC}`" in generate.VLLM_INSTALL  # the command users are told
    pins = _export(_sync_flags(generate.VLLM_SYNC))
    assert "vllm" in pins and "pytest" not in pins  # the extra, in the dev tools' place
    dev = _export([])
    # The torch vllm's own requirement resolved to in the lock is the one installed ...
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (entry,) = [p for p in lock["package"] if p["name"] == "vllm"]
    (torch_dep,) = [d for d in entry["dependencies"] if d["name"] == "torch"]
    assert pins["torch"] == torch_dep["version"], (pins["torch"], torch_dep)
    # ... and the extra never holds the dev environment's torch back to vLLM's
    assert _version(dev["torch"]) >= _version(pins["torch"]), (dev["torch"], pins["torch"])
    # the graders that need an extra resolve beside vLLM too
    assert "math-verify" in _export([*_sync_flags(generate.VLLM_SYNC), "--extra", "math-verify"])


def test_vllm_and_the_dev_group_are_declared_apart():
    # Without --no-dev the sync is refused (uv names the conflict) rather than resolving
    # one torch for both; this is why the documented command carries --no-dev.
    with pytest.raises(AssertionError, match="conflict"):
        _export(["--extra", "vllm"])


def _block_vllm(monkeypatch, error: ImportError | None) -> None:
    """``import vllm`` fails: as when it is not installed (`error` None), or with `error`."""
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    if error is None:
        monkeypatch.setitem(sys.modules, "vllm", None)  # ModuleNotFoundError, name "vllm"
        return

    class Broken:
        def find_spec(self, name, path=None, target=None):
            if name == "vllm":
                raise error
            return None

    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])


def test_a_missing_vllm_names_the_sync_command(monkeypatch):
    _block_vllm(monkeypatch, None)
    with pytest.raises(ConfigError) as exc:
        generate.require_vllm()
    message = str(exc.value)
    assert generate.VLLM_SYNC in message and "`backend hf`" in message and "\n" not in message


def test_a_vllm_that_does_not_import_is_told_apart(monkeypatch):
    _block_vllm(monkeypatch, ImportError("undefined symbol: _ZN3c10\nsecond line"))
    with pytest.raises(ConfigError) as exc:
        generate.require_vllm()
    message = str(exc.value)
    assert message.startswith("vllm does not work here (undefined symbol: _ZN3c10)")
    assert generate.VLLM_SYNC in message and "\n" not in message
    _block_vllm(monkeypatch, ModuleNotFoundError("No module named 'torch'", name="torch"))
    with pytest.raises(ConfigError, match=r"^vllm does not work here \(No module named 'torch'\)"):
        generate.require_vllm()


@pytest.mark.parametrize("installed,works", [("2.14.0", True), ("2.14.0+cu130", True),
                                             ("2.15.0", False)])  # fmt: skip
def test_vllm_under_another_torch_is_told_apart(monkeypatch, installed, works):
    # A plain `uv run` syncs the dev group's torch under an installed vllm, which then
    # imports but fails in its first CUDA extension; its own torch requirement tells.
    import importlib.metadata
    import types

    fake = types.ModuleType("vllm")
    monkeypatch.setitem(sys.modules, "vllm", fake)
    meta = {"vllm": ["torch==2.14.0", "torch>=99; extra == 'bench'", "numpy"]}
    versions = {"vllm": "0.33.0", "torch": installed}
    monkeypatch.setattr(importlib.metadata, "requires", lambda name: meta[name])
    monkeypatch.setattr(importlib.metadata, "version", lambda name: versions[name])
    if works:
        assert generate.require_vllm() is fake
        return
    with pytest.raises(ConfigError) as exc:
        generate.require_vllm()
    message = str(exc.value)
    assert message.startswith(
        "vllm does not work here (vllm 0.33.0 needs torch==2.14.0, and torch 2.15.0 is installed)"
    )
    assert generate.VLLM_SYNC in message and "--extra vllm --no-dev" in message


def test_the_installed_vllm_passes_its_own_check():
    vllm = pytest.importorskip("vllm")
    assert generate.require_vllm() is vllm  # the extra's torch is the one vllm requires


# --------------------------------------------------------------- against the real vllm
def _completion(ids: list[int]) -> str:
    """What the stand-in engine 'generates' for a prompt: its length, then the next turn."""
    return f" {len(ids)}\nQuestion: and then"


@pytest.fixture
def engine(monkeypatch):
    """`vllm.LLM` replaced by a GPU-free stand-in: its arguments are bound to the real
    `LLM.__init__` / `LLM.generate` signatures, vLLM's own `EngineArgs` reads the saved
    folder into its model config (architecture, dtype), vLLM's tokenizer loads from it,
    and the answers are real `RequestOutput` objects. Records what it was given."""
    vllm = pytest.importorskip("vllm")
    from vllm.engine.arg_utils import EngineArgs
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.tokenizers import get_tokenizer

    init = inspect.signature(vllm.LLM.__init__)
    gen = inspect.signature(vllm.LLM.generate)
    seen: dict[str, list] = {"configs": [], "calls": []}

    class Engine:
        def __init__(self, *args, **kwargs):
            init.bind(self, *args, **kwargs)
            seen["configs"].append(EngineArgs(*args, **kwargs).create_model_config())
            self.tokenizer = get_tokenizer(kwargs["tokenizer"])

        def generate(self, *args, **kwargs):
            bound = gen.bind(self, *args, **kwargs).arguments
            prompts, params = bound["prompts"], bound["sampling_params"]
            seen["calls"].append((prompts, params))
            outs = []
            for i, prompt in enumerate(prompts):
                text = _completion(prompt["prompt_token_ids"])
                ids = self.tokenizer.encode(text, add_special_tokens=False)
                done = CompletionOutput(index=0, text=text, token_ids=ids, cumulative_logprob=None,
                                        logprobs=None, finish_reason="length")  # fmt: skip
                outs.append(RequestOutput(request_id=str(i), prompt=None,
                                          prompt_token_ids=prompt["prompt_token_ids"],
                                          prompt_logprobs=None, outputs=[done], finished=True))  # fmt: skip
            return outs

    monkeypatch.setattr(vllm, "LLM", Engine)
    return vllm, seen


@pytest.mark.parametrize("family,template,arch", [("llama", "plain", "LlamaForCausalLM"),
                                                  ("qwen2", "chat", "Qwen2ForCausalLM")])  # fmt: skip
def test_generate_vllm_speaks_vllms_api(engine, tmp_path, family, template, arch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import SamplingType

    from gpart.data.math import encode_prompt, render_prompt

    vllm, seen = engine
    folder = write_tiny_decoder(tmp_path / family, family)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    questions = ["What is 12 + 30?", "What is 1 + 2?", "What is 40 + 41 and then 3 more?",
                 "What is 11 + 12?", "What is 20 + 25 plus 10 plus 7?"]  # fmt: skip
    prompts = [render_prompt(template, q, tokenizer=tok) for q in questions]
    chunks = []
    out = generate.generate_vllm(model, tok, prompts, template=template, max_new_tokens=9,
                                 chunk_size=2, on_chunk=lambda rows, s: chunks.append(rows),
                                 progress=False)  # fmt: skip

    (config,) = seen["configs"]  # one engine, on the saved merged model, in bf16
    assert config.architectures == [arch] and config.dtype == torch.bfloat16
    encoded = [encode_prompt(tok, p, template=template) for p in prompts]
    sent = [p for prompts_, _ in seen["calls"] for p in prompts_]
    assert [p["prompt_token_ids"] for p in sent] == encoded  # training's ids, dataset order
    for p in sent:
        assert TokensPrompt.__required_keys__ <= p.keys() <= TokensPrompt.__annotations__.keys()
    assert [len(c) for c, _ in seen["calls"]] == [2, 2, 1] and len(chunks) == 3
    params = {id(p): p for _, p in seen["calls"]}
    (params,) = params.values()  # one SamplingParams, built by vLLM's own class
    assert isinstance(params, vllm.SamplingParams)
    assert params.sampling_type == SamplingType.GREEDY and params.max_tokens == 9
    assert params.stop == list(generate.stop_markers(template))
    assert set(generate.eos_ids(model, tok)) <= params.all_stop_token_ids
    # vLLM's completions, read back: cut at the next turn (chat's is its EOS, a stop
    # token vLLM never writes as text), tokens counted, order kept
    cut = template != "chat"
    assert out.completions == [f" {len(ids)}\n" if cut else _completion(ids) for ids in encoded]
    retok = AutoTokenizer.from_pretrained(folder)
    assert out.tokens == [len(retok.encode(_completion(ids), add_special_tokens=False))
                          for ids in encoded]  # fmt: skip


def test_eval_math_backend_vllm_end_to_end(engine, tmp_path):
    from gpart.runners.math_eval import main

    _, seen = engine
    model = write_tiny_decoder(tmp_path / "llama", "llama")
    data = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": f"What is {a} + 1?", "answer": f"So.\n#### {a + 1}"} for a in range(3)])  # fmt: skip
    out = tmp_path / "out"
    assert main(["--base_model", str(model), "--dataset", "gsm8k", "--output_dir", str(out),
                 "data_file.gsm8k", str(data), "max_new_tokens", "5", "backend", "vllm"]) == 0  # fmt: skip
    folder = out / "eval" / "gsm8k"
    results = json.loads((folder / "results.json").read_text())
    records = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    assert results["total"] == 3 and results["settings"]["backend"] == "vllm"
    assert results["settings"]["dtype"] == "bfloat16" and results["settings"]["device"] == "vllm"
    (config,) = seen["configs"]
    assert config.architectures == ["LlamaForCausalLM"]
    sent = [p["prompt_token_ids"] for prompts, _ in seen["calls"] for p in prompts]
    assert [r["completion"] for r in records] == [f" {len(ids)}\n" for ids in sent]
