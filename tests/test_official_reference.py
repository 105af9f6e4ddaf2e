"""One GPart with the paper authors' code (SamsungLabs/GPart at 320f0c1, its peft fork).

* Adapters their code wrote (``../shared/fixtures/official-gpart``, skipped when absent) load
  through stock peft + gpart to the logits and per-layer deltas their code computes.
* The reference's stateless ids, from its formula in plain Python ints.
* With their code (`reference_tree.REFERENCE_SRC`: ``../shared/reference/GPart-320f0c1``, or
  ``GPART_REFERENCE_SRC``), both directions on
  models and settings the fixtures do not have (GPT-2 `Conv1D` with biases, Qwen2, ViT,
  other `d` and seeds): their adapters here, ours there (`reference_worker.py` runs their
  code in its own process).
* Adapters saved by gpart before it took the reference's definitions (scheme 1,
  ``tests/data/gpart_v1``, written by gpart at aeaddb3) still load to their own logits.
* Nothing loads silently wrong: a missing theta or an unknown field is one error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

import gpart  # noqa: F401  (registers GPart with peft)
from gpart import GPartConfig
from gpart.tuner.layer import GPartLayer
from gpart.tuner.partition import Partition
from gpart.tuner.schemes import SCHEME_CURRENT
from reference_tree import REFERENCE_SRC, SKIP_REASON
from reference_worker import build_base, model_input

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[1] / "shared" / "fixtures" / "official-gpart"
LEGACY = HERE / "data" / "gpart_v1"
M64 = (1 << 64) - 1


def _layers(model) -> dict[str, GPartLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, GPartLayer)}


def _delta_like_reference(layer: GPartLayer) -> torch.Tensor:
    """Our `get_delta_weight` is in the weight's storage layout; the reference's is in
    nn.Linear's [out, in] (transposed for Conv1D)."""
    dw = layer.get_delta_weight("default")
    return dw.t() if getattr(layer, "fan_in_fan_out", False) else dw


# ------------------------------------------------------------------ the fixtures
FIXTURE_CASES = sorted(p.name for p in FIXTURES.glob("*") if (p / "reference.pt").is_file())


def _fixture_base(kind: str):
    import transformers as tf

    cls = {"roberta": tf.RobertaForSequenceClassification, "llama": tf.LlamaForCausalLM}[kind]
    return cls.from_pretrained(FIXTURES / "bases" / kind).eval()


@pytest.mark.skipif(not FIXTURE_CASES, reason="../shared/fixtures/official-gpart absent")
@pytest.mark.parametrize("case", FIXTURE_CASES or ["none"])
def test_official_fixture_reproduces_the_reference_weights_and_logits(case):
    ref = torch.load(FIXTURES / case / "reference.pt", weights_only=False)
    model = PeftModel.from_pretrained(_fixture_base(ref["kind"]), FIXTURES / case / "adapter")
    model.eval()
    assert (
        model.peft_config["default"].scheme_version == SCHEME_CURRENT
    )  # no balanced there: 2 and 3 agree
    with torch.no_grad():
        logits = model(**ref["input"]).logits
    assert (ref["logits"] - ref["base_logits"]).abs().max() > 1e-4  # the adapter does change it
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=1e-5)
    layers = _layers(model)
    assert set(layers) == set(ref["deltas"])
    for name, want in ref["deltas"].items():
        torch.testing.assert_close(_delta_like_reference(layers[name]), want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ golden ids
def _reference_id(p: int, seed: int, d: int) -> int:
    """The reference's stateless id (its grouping.py), in unsigned Python ints:
    splitmix64(p + proj_seed + 0x9E3779B97F4A7C15) mod d."""
    x = (p + seed + 0x9E3779B97F4A7C15) & M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return (x ^ (x >> 31)) % d


@pytest.mark.parametrize("seed", [0, 42, 2**31 + 7, 2**63 - 1])
@pytest.mark.parametrize("d", [1, 7, 64, 23040, 65536, 1_000_003, 2**31 - 1])
@pytest.mark.parametrize("mode", ["off", "on"])
def test_stateless_ids_are_the_reference_formula(seed, d, mode):
    from gpart.tuner import fused

    part = Partition(total=2**40, d=d, seed=seed, grouping="random")
    for start, count in ((0, 70_000), (2**39 + 12_345, 1000)):
        with fused.forced(mode):
            got = part.group_ids(start, count)
        idx = list(range(0, count, 97)) + [count - 1]
        assert [int(got[i]) for i in idx] == [_reference_id(start + i, seed, d) for i in idx]
        assert int(got.min()) >= 0 and int(got.max()) < d


# ------------------------------------------------------------------ both codes side by side
CROSS_CASES = {
    "gpt2_bias_all": {"kind": "gpt2", "config": dict(d=96, target_modules=["c_attn", "c_proj"], bias="all", proj_seed=2**31 + 7)},
    "gpt2_gpart_only_materialized": {"kind": "gpt2", "config": dict(d=50, target_modules=["c_attn", "c_fc"], bias="gpart_only", assignment_backend="materialized", proj_seed=0)},
    "qwen2_all_proj": {"kind": "qwen2", "config": dict(d=1000, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], proj_seed=2**63 - 1)},
    "qwen2_block_bias": {"kind": "qwen2", "config": dict(d=77, target_modules=["q_proj", "k_proj", "v_proj"], partition_scope="transformer_block", bias="all", proj_seed=5)},
    "qwen2_signed_block": {"kind": "qwen2", "config": dict(d=33, target_modules=["q_proj", "v_proj", "down_proj"], grouping_strategy="signed_magnitude", assignment_backend="materialized", partition_scope="transformer_block", proj_seed=9)},
    "qwen2_fastfood_noniso": {"kind": "qwen2", "config": dict(d=300, target_modules=["q_proj", "v_proj"], projection_type="fastfood", isometric=False, proj_seed=11)},
    "vit_qv_isometric_false": {"kind": "vit", "config": dict(d=129, target_modules=["q_proj", "v_proj"], isometric=False, proj_seed=1)},
    "vit_materialized_block": {"kind": "vit", "config": dict(d=10, target_modules=["q_proj", "v_proj", "fc1"], assignment_backend="materialized", partition_scope="transformer_block", layers_pattern="layers", proj_seed=3)},
}  # fmt: skip


def _reference(mode: str, cases: dict, out: Path) -> None:
    spec = out / f"cases_{mode}.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": f"{REFERENCE_SRC}{os.pathsep}{HERE}"}
    subprocess.run(
        [sys.executable, str(HERE / "reference_worker.py"), mode, str(spec), str(out)],
        check=True,
        env=env,
        cwd=out,
    )


needs_reference = pytest.mark.skipif(not REFERENCE_SRC, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def reference_adapters(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    cases = {k: {**v, "seed": i} for i, (k, v) in enumerate(CROSS_CASES.items())}
    _reference("write", cases, out)
    return out


@pytest.mark.slow
@needs_reference
@pytest.mark.parametrize("case", list(CROSS_CASES))
def test_reference_adapters_of_other_models_load_to_the_reference_weights(case, reference_adapters):
    kind = CROSS_CASES[case]["kind"]
    ref = torch.load(reference_adapters / case / "reference.pt", weights_only=False)
    model = PeftModel.from_pretrained(build_base(kind), reference_adapters / case / "adapter")
    model.eval()
    with torch.no_grad():
        logits = model(**model_input(kind)).logits
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=1e-5)
    layers = _layers(model)
    assert set(layers) == set(ref["deltas"])
    for name, want in ref["deltas"].items():
        torch.testing.assert_close(_delta_like_reference(layers[name]), want, rtol=0, atol=1e-5)


@pytest.mark.slow
@needs_reference
def test_our_adapters_load_in_the_reference_code_to_our_weights(tmp_path):
    expected = {}
    for i, (case, spec) in enumerate(CROSS_CASES.items()):
        model = get_peft_model(build_base(spec["kind"]), GPartConfig(**spec["config"]))
        with torch.no_grad():
            theta = model.base_model.gpart_theta_d["default"]
            theta.copy_(torch.randn(theta.shape, generator=torch.Generator().manual_seed(i)))
        model.eval()
        with torch.no_grad():
            expected[case] = model(**model_input(spec["kind"])).logits
        model.save_pretrained(tmp_path / case / "adapter")
    _reference("read", {k: {**v, "seed": 0} for k, v in CROSS_CASES.items()}, tmp_path)
    for case, want in expected.items():
        got = torch.load(tmp_path / case / "reference_read.pt")["logits"]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ earlier gpart adapters
LEGACY_CASES = sorted(p.name for p in LEGACY.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", LEGACY_CASES)
def test_scheme1_adapters_saved_by_earlier_gpart_reload_to_their_own_logits(case):
    kind = case.split("_", 1)[0]
    model = PeftModel.from_pretrained(build_base(kind), LEGACY / case).eval()
    assert model.peft_config["default"].scheme_version == 1
    with torch.no_grad():
        logits = model(**model_input(kind)).logits
        base = build_base(kind)(**model_input(kind)).logits
    want = torch.load(LEGACY / case / "expected_logits.pt")
    assert (want - base).abs().max() > 1e-4
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-6)


def test_a_saved_adapter_is_in_the_reference_format_and_round_trips(tmp_path):
    config = GPartConfig(d=40, target_modules=["query", "value"], bias="gpart_only")
    model = get_peft_model(build_base("roberta"), config)
    with torch.no_grad():
        model.base_model.gpart_theta_d["default"].normal_()
    model.eval()
    x = model_input("roberta")
    with torch.no_grad():
        want = model(**x).logits
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    for field in ("grouping_strategy", "assignment_backend", "projection_type", "proj_seed"):
        assert field in saved
    assert saved["scheme_version"] == SCHEME_CURRENT
    assert not {"grouping", "assignment", "projection"} & set(saved)
    assert set(load_file(tmp_path / "adapter_model.safetensors")) == {"base_model.gpart_theta_d"}
    loaded = PeftModel.from_pretrained(build_base("roberta"), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**x).logits, want)


# ------------------------------------------------------------------ nothing silently wrong
def _copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_theta_is_one_error_not_the_base_model(tmp_path):
    ad = _copy_adapter(LEGACY / "roberta_random", tmp_path / "ad")
    save_file({"base_model.something_else": torch.zeros(64)}, ad / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"must hold theta once.*gpart_theta_d"):
        PeftModel.from_pretrained(build_base("roberta"), ad)


def test_theta_of_the_wrong_length_is_an_error(tmp_path):
    ad = _copy_adapter(LEGACY / "roberta_random", tmp_path / "ad")
    save_file({"base_model.gpart_theta": torch.zeros(65)}, ad / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"shape \(65,\), its config says d=64"):
        PeftModel.from_pretrained(build_base("roberta"), ad)


@pytest.mark.parametrize(
    "edit,match",
    [
        ({"grouping_strategy": "zigzag"}, r"grouping_strategy must be one of"),
        ({"block_size": 4}, r"field\(s\) \['block_size'\] that this version of gpart does not"),
        ({"scheme_version": 9}, r"scheme_version must be one of"),
        ({"grouping": "random"}, r"names both \['grouping'\] and \['grouping_strategy'\]"),
    ],
)
def test_config_fields_or_values_we_do_not_implement_are_one_error(tmp_path, edit, match):
    ad = tmp_path / "ad"
    get_peft_model(
        build_base("roberta"), GPartConfig(d=16, target_modules=["query"])
    ).save_pretrained(ad)
    config = json.loads((ad / "adapter_config.json").read_text())
    config.update(edit)
    (ad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        PeftModel.from_pretrained(build_base("roberta"), ad)


def test_reference_deprecated_backend_names_still_read(tmp_path):
    ad = tmp_path / "ad"
    model = get_peft_model(build_base("roberta"), GPartConfig(d=16, target_modules=["query"]))
    model.save_pretrained(ad)
    config = json.loads((ad / "adapter_config.json").read_text())
    del config["scheme_version"]
    config["assignment_backend"] = "implicit_stateless_v1"  # the reference's old spelling
    (ad / "adapter_config.json").write_text(json.dumps(config))
    loaded = PeftModel.from_pretrained(build_base("roberta"), ad)
    cfg = loaded.peft_config["default"]
    assert (cfg.assignment_backend, cfg.scheme_version) == ("stateless", SCHEME_CURRENT)
