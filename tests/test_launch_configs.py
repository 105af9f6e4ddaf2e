"""The shipped accelerate launch configs load with accelerate's own parser, name only
options accelerate knows, and (FSDP) keep GPart's shared theta in the root unit."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "accelerate").glob("*.yaml"))
FSDP_YAML = Path(__file__).parents[1] / "configs" / "accelerate" / "fsdp.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_loads(path):
    cfg = ClusterConfig.from_yaml_file(str(path))
    assert cfg.num_processes >= 1 and cfg.mixed_precision == "no"


def test_every_launch_mode_is_shipped():
    assert {p.stem for p in CONFIGS} >= {"single_gpu", "ddp", "fsdp"}


def test_fsdp_config_names_options_accelerate_knows():
    """Each ``fsdp_config`` key is one of ``accelerate launch``'s ``--fsdp_*`` options (a
    misspelt key would otherwise be dropped without a word)."""
    from accelerate.commands.launch import launch_command_parser

    cfg = ClusterConfig.from_yaml_file(str(FSDP_YAML))
    known = {a.dest for a in launch_command_parser()._actions}
    fsdp = cfg.fsdp_config
    assert set(fsdp) <= known, set(fsdp) - known
    assert cfg.distributed_type == "FSDP"
    assert fsdp["fsdp_version"] == 1 and fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_use_orig_params"] is True


def test_fsdp_wrap_policy_keeps_gpart_theta_in_the_root_unit(tmp_path, monkeypatch):
    """The policy Trainer applies to a peft model under FSDP (peft's
    `fsdp_auto_wrap_policy`: the decoder layer class, plus trainable leaf layers) wraps every
    decoder layer, and no wrapped module holds theta: theta stays in the root unit, which
    is unsharded for the whole forward, so every adapted layer reads all of it."""
    from peft import get_peft_model
    from peft.utils.other import fsdp_auto_wrap_policy
    from transformers import AutoModelForCausalLM

    from gpart import GPartConfig
    from math_env import write_tiny_decoder

    monkeypatch.delenv("FSDP_TRANSFORMER_CLS_TO_WRAP", raising=False)
    base = AutoModelForCausalLM.from_pretrained(write_tiny_decoder(tmp_path / "m", "llama"))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(base, GPartConfig(d=64, target_modules=targets))
    policy = fsdp_auto_wrap_policy(model)
    wrapped = [
        (n, m) for n, m in model.named_modules() if policy(m, recurse=False, nonwrapped_numel=0)
    ]
    theta = model.base_model.gpart_theta_d["default"]
    assert theta.requires_grad
    assert sorted(type(m).__name__ for _, m in wrapped) == ["LlamaDecoderLayer"] * 2
    assert all(all(p is not theta for p in m.parameters()) for _, m in wrapped)
