"""The adapter registry: contents, registration rules, and that it drives every listing."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpart.configs import (
    AdapterConfig,
    ConfigError,
    adapter_names,
    build_parser,
    get_adapter,
    parse_cli,
    register_adapter,
    resolve_experiment,
)
from gpart.configs import registry as registry_mod

PAPER_ADAPTERS = ["gpart", "lora", "dora", "unilora", "vera", "fourierft", "vblora"]
NON_PEFT = ["bitfit", "head", "full"]


def test_all_paper_adapters_registered_in_order():
    assert adapter_names() == PAPER_ADAPTERS + NON_PEFT
    for name in PAPER_ADAPTERS:
        assert get_adapter(name).is_peft, name
    for name in NON_PEFT:
        spec = get_adapter(name)
        assert not spec.is_peft and spec.apply is not None, name


def test_every_config_class_has_base_fields_and_its_own_type():
    for name in adapter_names():
        cfg = get_adapter(name).config_cls()
        assert isinstance(cfg, AdapterConfig)
        assert cfg.type == name
        assert hasattr(cfg, "target_modules")
        keys = {f.name for f in dataclasses.fields(cfg)} - {"type"}
        if get_adapter(name).is_peft:
            # A peft method's keys are its peft config's fields, under the same names.
            assert keys <= {f.name for f in dataclasses.fields(cfg.peft_config)}, name
        else:
            assert cfg.peft_config is None and keys == {"target_modules"}, name


def test_unknown_adapter_suggests():
    with pytest.raises(ConfigError, match=r"'vra' is not registered; did you mean 'vera'\?"):
        get_adapter("vra")


@dataclass
class _ToyConfig(AdapterConfig):
    type: str = "toy"
    scale: float = 2.0


def _toy_apply(model, cfg, head_names):
    for p in model.parameters():
        p.requires_grad_(True)


@pytest.fixture
def toy_adapter():
    spec = register_adapter("toy", _ToyConfig, apply=_toy_apply, description="test only")
    yield spec
    del registry_mod._REGISTRY["toy"]


def test_new_adapter_appears_everywhere_without_edits(toy_adapter):
    assert "toy" in adapter_names()
    action = next(a for a in build_parser()._actions if a.dest == "adapter_type")
    assert "toy" in action.choices
    cfg, _ = parse_cli(["--adapter_type", "toy", "adapter.scale", "0.5"])
    assert cfg.adapter == _ToyConfig(scale=0.5)
    # Its fields become valid keys (and only for it).
    with pytest.raises(ConfigError, match="belongs to adapter toy"):
        resolve_experiment(adapter="gpart", overrides={"adapter.scale": "1"})


def test_registration_rules(toy_adapter):
    # Same spec again: no-op (modules can be re-imported).
    assert register_adapter("toy", _ToyConfig, apply=_toy_apply, description="test only")
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("toy", _ToyConfig, apply=lambda m, c, h: None)
    with pytest.raises(ValueError, match="exactly one of"):
        register_adapter("toy2", _ToyConfig)
    with pytest.raises(ValueError, match="must default to 'other'"):
        register_adapter("other", _ToyConfig, apply=_toy_apply)
    with pytest.raises(TypeError, match="subclass AdapterConfig"):
        register_adapter("plain", dict, apply=_toy_apply)  # type: ignore[arg-type]
    assert "toy2" not in adapter_names() and "other" not in adapter_names()


def test_the_docs_list_every_peft_adapters_keys():
    # docs/configuration.md, "Adapter keys": one row per peft adapter, its keys in order.
    text = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    table = text.split("## Adapter keys", 1)[1].split("\n\n")[2]
    listed = {}
    for row in table.splitlines()[2:]:
        adapters, _, keys = row.strip("|").split("|")
        for name in re.findall(r"`([\w-]+)`", adapters):
            listed[name] = [k for k in re.findall(r"`([\w-]+)`", keys) if not k.startswith("-")]
    for name in adapter_names():
        if get_adapter(name).is_peft:
            fields = [f.name for f in dataclasses.fields(get_adapter(name).config_cls)]
            assert listed.get(name) == fields[2:], name  # after type, target_modules
