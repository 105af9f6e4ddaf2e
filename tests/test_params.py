"""Parameter breakdown and --compute_params_only (models built from configs, no weights)."""

from __future__ import annotations

import json

import pytest
import torch

from gpart.configs import ConfigError, adapter_names, resolve_experiment
from gpart.params import build_model_from_config, compute_params, parameter_breakdown
from gpart.runners.cli import cli_main

H = 32  # hidden size of the tiny configs


def _head(num_labels: int) -> int:
    # RoBERTa's classifier: dense H->H and out_proj H->num_labels, with biases.
    return H * H + H + H * num_labels + num_labels


def _base_total(config, num_labels: int) -> int:
    from transformers import AutoModelForSequenceClassification

    config.num_labels = num_labels
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("d", [64, 1000])
def test_gpart_trainable_is_d_plus_head(d, tiny_roberta_config):
    exp = resolve_experiment(adapter="gpart", tasks="sst2,stsb", overrides={"adapter.d": str(d)})
    out = compute_params(exp, model_config=tiny_roberta_config, device="cpu")
    for task, labels in (("sst2", 2), ("stsb", 1)):
        b = out[task]
        assert b["trainable_adapter"] == d
        assert b["trainable_head"] == _head(labels)
        assert b["trainable"] == d + _head(labels)
        assert b["adapter_storage_bytes"] == d * 4  # fp32 theta, nothing else
        assert b["head_storage_bytes"] == _head(labels) * 4
        # peft's frozen copy of the head is not counted twice.
        assert b["total"] == _base_total(tiny_roberta_config, labels) + d
        assert b["head_modules"] == ["classifier"]


def test_lora_head_full_counts(tiny_roberta_config):
    r = 4
    lora = resolve_experiment(adapter="lora", overrides={"adapter.r": str(r)})
    b = compute_params(lora, model_config=tiny_roberta_config)["sst2"]
    # 2 layers x (query, value) x (A: r x H + B: H x r)
    assert b["trainable_adapter"] == 2 * 2 * r * (H + H)
    head = compute_params(resolve_experiment(adapter="head"), model_config=tiny_roberta_config)
    assert head["sst2"]["trainable_adapter"] == 0 and head["sst2"]["adapter_storage_bytes"] == 0
    full = compute_params(resolve_experiment(adapter="full"), model_config=tiny_roberta_config)
    assert full["sst2"]["trainable"] == full["sst2"]["total"]
    assert full["sst2"]["total"] == _base_total(tiny_roberta_config, 2)


def test_meta_device_counts_equal_cpu_for_every_adapter(tiny_roberta_config):
    sizes = {
        "gpart": {"adapter.d": "64"},
        "unilora": {"adapter.theta_d_length": "64"},
        "fourierft": {"adapter.n_frequency": "16"},
        "vblora": {"adapter.vector_length": "16", "adapter.num_vectors": "8"},
    }
    for adapter in adapter_names():
        exp = resolve_experiment(adapter=adapter, overrides=sizes.get(adapter, {}))
        cpu = compute_params(exp, model_config=tiny_roberta_config, device="cpu")
        meta = compute_params(exp, model_config=tiny_roberta_config, device="meta")
        assert cpu == meta, adapter


def test_parameter_breakdown_of_a_plain_model():
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Linear(4, 4))
    model.add_module("classifier", torch.nn.Linear(4, 2))
    model.body.weight.requires_grad_(False)
    b = parameter_breakdown(model, ["classifier"])
    assert b["total"] == 30
    assert (b["trainable_adapter"], b["trainable_head"]) == (4, 10)
    assert b["adapter_storage_bytes"] == 16  # the trainable bias, fp32


def test_local_model_dir_offline_and_json_output(tiny_roberta_config, tmp_path, capsys):
    model_dir = tmp_path / "tiny-roberta"
    tiny_roberta_config.save_pretrained(model_dir)  # config.json only: no weights anywhere
    out_dir = tmp_path / "runs"
    argv = ["--compute_params_only", "--tasks", "sst2,stsb", "--base_model", str(model_dir)]
    argv += ["--output_dir", str(out_dir), "adapter.d", "64"]
    assert cli_main(lambda cfg, flags: pytest.fail("must not train"), argv) == 0
    (path,) = out_dir.glob("params_gpart_base_*.json")
    data = json.loads(path.read_text())
    assert data["adapter"] == "gpart" and data["model"] == str(model_dir)
    assert data["tasks"]["sst2"]["trainable_adapter"] == 64
    assert data["tasks"]["stsb"]["trainable_head"] == _head(1)
    printed = capsys.readouterr().out
    assert "gpart sst2: total" in printed and "adapter storage 256 bytes" in printed
    assert not list(out_dir.glob(".*"))  # no temporary file left behind


def test_build_model_from_config_sets_labels(tiny_roberta_config):
    exp = resolve_experiment(tasks="stsb,mnli")
    stsb = build_model_from_config(exp, "stsb", model_config=tiny_roberta_config)
    mnli = build_model_from_config(exp, "mnli", model_config=tiny_roberta_config)
    assert stsb.config.num_labels == 1 and stsb.config.problem_type == "regression"
    assert mnli.config.num_labels == 3
    assert tiny_roberta_config.num_labels == 2  # the caller's config is not modified
    with pytest.raises(ConfigError, match="not in this run"):
        build_model_from_config(exp, "rte", model_config=tiny_roberta_config)


def test_missing_model_path_is_a_config_error(tmp_path):
    exp = resolve_experiment(overrides={"model.base_model": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="model.base_model: cannot load a config from"):
        build_model_from_config(exp, "sst2")
